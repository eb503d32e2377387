"""The reference: the exact function a formulation's figures are measured against.

The BCE loss family, declared once and free of any framework and of mpmath (the oracle,
``bce_audit.oracle.family``, evaluates it). A ``Reference`` is one member with its parameters;
the default, ``Reference()``, is plain unweighted BCE at the label given, the reference of every
figure until a formulation declares another. Exact definitions, with the conventions and their
sources, are in docs/oracle.md (The BCE family).

With p = σ(z) on logits, y the label (already rounded to the dtype), every member is a function
of (p, y):

* ``bce``: -w·(w_p·y·log p + (1-y)·log(1-p)); ``pos_weight`` w_p >= 0 and ``weight`` w (a
  finite scalar factor) as in torch's ``BCEWithLogitsLoss``. Plain BCE is w_p = w = 1.
* ``focal`` (Lin et al. 2017), ``gamma`` γ >= 0, ``alpha`` α in [0, 1] or None (no weighting),
  in one of two ``form``s that agree on hard labels:
  ``torchvision``: α_t·ce·(1-p_t)^γ with ce the BCE, p_t = p·y + (1-p)(1-y),
  α_t = α·y + (1-α)(1-y) (1 when α is None);
  ``per-term``: -α·y·(1-p)^γ·log p - (1-α)(1-y)·p^γ·log(1-p) (α and 1-α both 1 when None).
* ``label-smoothed-bce``: plain BCE at the smoothed label y', computed exactly from y and the
  ``smoothing`` ε in one of two ``convention``s: ``keras`` y' = y(1-ε) + ε/2, ``smp``
  y' = (1-y)ε + y(1-ε).

Labels and parameters are exact binary values, so every coefficient here (α_t, w_p·y, y') is an
exact dyadic rational: they are returned as ``fractions.Fraction``, never rounded.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping, Sequence
from fractions import Fraction

from bce_audit.errors import UsageError
from bce_audit.vocabulary import ParsableEnum


class Member(ParsableEnum):
    """A member of the BCE loss family."""

    BCE = "bce"
    FOCAL = "focal"
    LABEL_SMOOTHED = "label-smoothed-bce"


class FocalForm(ParsableEnum):
    """How a focal loss treats a soft label (both agree at y = 0 and y = 1)."""

    TORCHVISION = "torchvision"  # α_t·ce·(1 - p_t)^γ, torchvision.ops.sigmoid_focal_loss
    PER_TERM = "per-term"  # -α·y·(1-p)^γ·log p - (1-α)(1-y)·p^γ·log(1-p)


class SmoothingConvention(ParsableEnum):
    """Where label smoothing moves a label."""

    KERAS = "keras"  # y' = y(1-ε) + ε/2: Keras / TF binary_crossentropy(label_smoothing=ε)
    SMP = "smp"  # y' = (1-y)ε + y(1-ε): segmentation_models_pytorch SoftBCEWithLogitsLoss(smooth_factor=ε)


# The parameters each member takes, in the order they are shown.
MEMBER_PARAMETERS: dict[Member, tuple[str, ...]] = {
    Member.BCE: ("pos_weight", "weight"),
    Member.FOCAL: ("gamma", "alpha", "form"),
    Member.LABEL_SMOOTHED: ("smoothing", "convention"),
}


# The parameter that makes a member more than plain BCE: a loss that declares the member and has
# it nowhere (a class whose forward hard-codes gamma) is refused, not silently measured against
# plain BCE.
_DEFINING = {Member.FOCAL: "gamma", Member.LABEL_SMOOTHED: "smoothing"}

# The largest focusing exponent the oracle takes. Above about 50,000 its precision loop (up to
# 49,152 bits) cannot always settle (1 - p_t)^γ next to where it underflows every format; 10,000
# is verified (tests/oracle/test_family.py), and published focal losses use γ from 0 to 5.
MAX_GAMMA = 10_000


@dataclasses.dataclass(frozen=True)
class Reference:
    """One member of the BCE family with its parameters: the exact function figures are
    measured against.

    member: which loss (``bce``, ``focal``, ``label-smoothed-bce``).
    pos_weight: w_p >= 0, the factor of the positive term (``bce``; 1: none).
    weight: w, a finite factor of the whole loss (``bce``; 1: none).
    gamma: γ >= 0, the focusing exponent (``focal``).
    alpha: α in [0, 1], or None for no class weighting (``focal``; torchvision's α < 0).
    form: the focal loss's soft-label form (``focal``).
    smoothing: ε in [0, 1] (``label-smoothed-bce``).
    convention: where smoothing moves a label (``label-smoothed-bce``).

    A parameter that is not its member's must keep its default.
    """

    member: Member = Member.BCE
    pos_weight: float = 1.0
    weight: float = 1.0
    gamma: float = 0.0
    alpha: float | None = None
    form: FocalForm = FocalForm.TORCHVISION
    smoothing: float = 0.0
    convention: SmoothingConvention = SmoothingConvention.KERAS

    def __post_init__(self) -> None:
        def bad(name: str, why: str) -> UsageError:
            return UsageError(f"reference {self.member}: {name} {why}")

        for name in ("pos_weight", "weight", "gamma", "smoothing"):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not math.isfinite(value):
                raise bad(name, f"must be a finite number, not {_given(value)}")
            object.__setattr__(self, name, float(value) + 0.0)  # -0.0 and 0.0: one reference
        if self.alpha is not None:
            if isinstance(self.alpha, bool) or not isinstance(self.alpha, int | float) or math.isnan(self.alpha):
                raise bad("alpha", f"must be a number in [0, 1] or none, not {_given(self.alpha)}")
            if self.alpha < 0:  # torchvision: a negative alpha means no weighting
                object.__setattr__(self, "alpha", None)
            elif self.alpha > 1:
                raise bad("alpha", f"must be in [0, 1] (or negative: none), not {self.alpha!r}")
            else:
                object.__setattr__(self, "alpha", float(self.alpha) + 0.0)
        object.__setattr__(self, "member", Member.parse(str(self.member), "reference"))
        object.__setattr__(self, "form", FocalForm.parse(str(self.form), "focal form"))
        object.__setattr__(self, "convention", SmoothingConvention.parse(str(self.convention), "smoothing convention"))
        if self.pos_weight < 0:
            raise bad("pos_weight", f"must be >= 0, not {self.pos_weight!r}")
        if self.gamma < 0:
            raise bad("gamma", f"must be >= 0, not {self.gamma!r}")
        if self.gamma > MAX_GAMMA:
            limit = f"must be at most {MAX_GAMMA:,} (the oracle's limit; focal losses use 0 to 5)"
            raise bad("gamma", f"{limit}, not {self.gamma!r}")
        if not 0 <= self.smoothing <= 1:
            raise bad("smoothing", f"must be in [0, 1], not {self.smoothing!r}")
        defaults = Reference.__dataclass_fields__
        for name in ("pos_weight", "weight", "gamma", "alpha", "form", "smoothing", "convention"):
            if name not in MEMBER_PARAMETERS[self.member] and getattr(self, name) != defaults[name].default:
                raise bad(name, f"is not a parameter of {self.member} (its parameters: {self._names()})")

    def _names(self) -> str:
        return ", ".join(MEMBER_PARAMETERS[self.member])

    @property
    def is_plain(self) -> bool:
        """Whether this is plain, unweighted BCE (the oracle's original, unchanged path)."""
        return self == PLAIN_BCE

    @property
    def parameters(self) -> tuple[tuple[str, float | str | None], ...]:
        """This member's parameters as (name, value) pairs, in declaration order."""
        return tuple((name, getattr(self, name)) for name in MEMBER_PARAMETERS[self.member])

    @property
    def key(self) -> str:
        """A canonical text naming this reference exactly: ``bce`` for plain BCE, else the
        member and every parameter, numbers in Python's round-trip repr (``focal(gamma=2.0,
        alpha=0.25, form=torchvision)``). Two references are equal exactly when their keys are."""
        if self.is_plain:
            return str(Member.BCE)
        shown = ", ".join(f"{name}={_show(value)}" for name, value in self.parameters)
        return f"{self.member}({shown})"

    def __str__(self) -> str:
        return self.key

    def to_dict(self) -> dict[str, float | str | None]:
        """The member and its parameters as JSON data (``from_dict`` reads it back)."""
        return {"member": str(self.member), **{k: (str(v) if isinstance(v, str) else v) for k, v in self.parameters}}

    @classmethod
    def from_dict(cls, data: dict[str, float | str | None]) -> Reference:
        return cls(**data)  # type: ignore[arg-type]  # validated by __post_init__

    @classmethod
    def for_member(cls, member: Member, parameters: Mapping[str, object]) -> Reference:
        """The reference of ``member`` with those of ``parameters`` that are its own (a
        formulation's other parameters, e.g. a clamp epsilon, are not the reference's)."""
        own = {k: v for k, v in parameters.items() if k in MEMBER_PARAMETERS[member]}
        return cls(member, **own)  # type: ignore[arg-type]  # validated by __post_init__

    @classmethod
    def for_loss(
        cls,
        member: Member,
        named: Mapping[str, object],
        sources: Sequence[tuple[str, Mapping[str, object]]],
        complete: bool = False,
    ) -> Reference:
        """The reference of a loss that implements ``member``: each of the member's parameters
        as the reference names it (``named``: the user's explicit value), else as the loss itself
        has it, from the first of ``sources`` that holds the name (its call's parameters, its
        constructor's ``init``, its signature's literal defaults: (what, values) pairs, in that
        order), else the family's default. So a focal loss called with ``alpha=0.25`` (or whose
        signature defaults to it) is measured against α = 0.25, never silently against none.

        None from the loss is what torch means by it: the parameter's neutral value (``alpha``
        none, ``pos_weight`` and ``weight`` 1, ``gamma`` and ``smoothing`` 0: the family's
        default). A value of the loss that the member refuses (``alpha = "0.25"``, a list) is a
        UsageError naming the parameter and where it was taken from. complete: every source is
        known (the loss is loaded): then the parameter that makes the member more than plain BCE
        (focal's gamma, label smoothing's smoothing) found nowhere is a UsageError too.
        """
        values: dict[str, object] = {k: v for k, v in named.items() if k in MEMBER_PARAMETERS[member]}
        for name in MEMBER_PARAMETERS[member]:
            if name in values:
                continue
            source = next(((what, given) for what, given in sources if name in given), None)
            if source is None and complete and name == _DEFINING.get(member):
                looked = ", ".join(what for what, _ in sources) or "parameters"
                raise UsageError(
                    f"reference {member}: {name} is given nowhere (not in the reference, nor in the loss's "
                    f"{looked}), and the family's default would make it plain BCE; name it: "
                    f'reference = {{ loss = "{member}", {name} = ... }}'
                )
            if source is None or source[1][name] is None:
                continue  # the family's default (None from the loss: its neutral value, the same)
            what, value = source[0], source[1][name]
            try:
                cls(member, **{name: value})  # type: ignore[arg-type]  # validated by __post_init__
            except UsageError as exc:
                raise UsageError(
                    f"{exc}; the reference takes {name} from the loss's {what}: name {name} in the "
                    "reference to measure it against another value"
                ) from None
            values[name] = value
        return cls(member, **values)  # type: ignore[arg-type]  # validated by __post_init__

    # --- exact coefficients (dyadic rationals) ---------------------------------------------------

    def smoothed_label(self, y: float) -> Fraction:
        """The label the loss is evaluated at, exactly: y itself, or y' for label smoothing."""
        yy = Fraction(y)
        if self.member is not Member.LABEL_SMOOTHED:
            return yy
        eps = Fraction(self.smoothing)
        if self.convention is SmoothingConvention.KERAS:
            return yy * (1 - eps) + eps / 2
        return (1 - yy) * eps + yy * (1 - eps)

    def bce_coefficients(self, label: Fraction) -> tuple[Fraction, Fraction, Fraction]:
        """(a, b, w) with loss = w·(-a·log p - b·log(1-p)) at the exact (smoothed) label, for
        the BCE-shaped members: ``bce``, ``label-smoothed-bce``, and ``focal`` at γ = 0."""
        if self.member is Member.FOCAL:
            if self.gamma != 0:
                raise ValueError("a focal loss with gamma > 0 is not BCE-shaped")
            if self.form is FocalForm.TORCHVISION:
                at = self.alpha_t(label)
                return at * label, at * (1 - label), Fraction(1)
            positive, negative = self.focal_term_weights()
            return positive * label, negative * (1 - label), Fraction(1)
        return Fraction(self.pos_weight) * label, 1 - label, Fraction(self.weight)

    def alpha_t(self, label: Fraction) -> Fraction:
        """α_t = α·y + (1-α)(1-y), torchvision's class weight (1 when α is None)."""
        if self.alpha is None:
            return Fraction(1)
        a = Fraction(self.alpha)
        return a * label + (1 - a) * (1 - label)

    def focal_term_weights(self) -> tuple[Fraction, Fraction]:
        """(α, 1-α), the per-term form's weights of the positive and negative terms ((1, 1)
        when α is None)."""
        if self.alpha is None:
            return Fraction(1), Fraction(1)
        return Fraction(self.alpha), 1 - Fraction(self.alpha)


def _given(value: object) -> str:
    """A value a user gave, as they wrote it: a list (a TOML array, held as a tuple) as a list."""
    return repr(list(value)) if isinstance(value, tuple) else repr(value)


def _show(value: float | str | None) -> str:
    if value is None:
        return "none"
    return repr(value) if isinstance(value, float) else str(value)


PLAIN_BCE = Reference()
