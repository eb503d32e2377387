"""User code runs in child processes, where it cannot take the audit down with it.

A user's formulation (``--impl``, a config table, an entry point) is imported and called only in
a sandbox process of its own, never in bce-audit's process nor beside another user formulation:
whatever it does at import or in a call (flip torch's global switches, monkeypatch torch, call
``os._exit(0)``, fork, close ``sys.stdout``, hang, exhaust memory, crash in native code, raise
KeyboardInterrupt) stays there. The parent sends requests over a pipe (a JSON header and raw float64
arrays: data, never pickle; each request carries an id its answer must echo) and waits for each
answer at most ``timeout`` seconds.

* An answer that never comes: the child is killed (with every process it started) and the
  evaluation is *lost*, with the reason; the formulation's later evaluations are not attempted
  (each would cost the whole time limit again) and are lost too.
* A child that dies (exits, is killed, crashes): the evaluation is lost with the reason, and the
  next request starts a fresh child.
* Memory: the child's address space is limited (RLIMIT_AS, ``memory_budget()`` above what it
  holds after start-up); running out is a lost evaluation, not a finding about the loss.
* A copy of the child that the user's code forks never answers: it ends the moment it gets back
  to bce-audit's code.

A lost evaluation is neither a pass nor a regression: ``bce-audit check`` exits 4 (incomplete)
when any planned case was lost, and every report names them with the reason.

Children are forked from multiprocessing's fork server, which imports torch once per run, so a
fresh child starts in milliseconds. Each child leads its own process group (a terminal's Ctrl-C
reaches only bce-audit, which then ends it), adopts every process its code starts, even in a new
session (a child subreaper), and asks the kernel to kill it when its parent dies; closing the
sandbox kills them all, so none outlives the run.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import os
import signal
import sys
from typing import TYPE_CHECKING, Any

import numpy as np

from bce_audit.engines.interface import Evaluation, GridEvaluation
from bce_audit.engines.native_logs import quiet_tensorflow
from bce_audit.errors import EvaluationLost, UsageError, describe
from bce_audit.processes import (
    DEFAULT_TIMEOUT,
    become_subreaper,
    die_with_parent,
    forkserver_context,
    kill_tree,
    no_main,
)
from bce_audit.vocabulary import Mode

if TYPE_CHECKING:  # pragma: no cover
    import threading
    from multiprocessing.connection import Connection
    from multiprocessing.process import BaseProcess

    from bce_audit.formulations.interface import Formulation, UserFormulationSpec
    from bce_audit.vocabulary import Domain, DType


def memory_budget() -> int:
    """Bytes of address space a child may add to what it holds after start-up: half of the
    physical memory, at least 2 GiB."""
    try:
        physical = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):
        physical = 8 << 30
    return max(2 << 30, physical // 2)


# Messages that say a child ran out of memory (a MemoryError, or torch's allocator refusing).
_OUT_OF_MEMORY = ("MemoryError", "can't allocate memory", "not enough memory", "out of memory")


def out_of_memory(message: str | None) -> bool:
    return message is not None and any(m in message for m in _OUT_OF_MEMORY)


# --------------------------------------------------------------------------- the wire format


def _pack(header: dict[str, Any], payload: bytes = b"") -> bytes:
    return json.dumps(header).encode("utf-8") + b"\n" + payload


def _unpack(message: bytes) -> tuple[dict[str, Any], bytes]:
    head, _, payload = message.partition(b"\n")
    header = json.loads(head)
    if not isinstance(header, dict):
        raise ValueError("malformed message")
    return header, payload


# --------------------------------------------------------------------------- the parent's side


# The answer to a child's setup (environment, directory, standard error) may take a moment on a
# loaded machine, whatever --timeout says.
_START_TIMEOUT = 60.0


def child_key(spec: UserFormulationSpec) -> str:
    """Which child runs a spec: one per function and parameters (its name comes later)."""
    return json.dumps({"target": spec.target, "base_dir": spec.base_dir, "parameters": list(spec.parameters)})


class _Child:
    """One sandbox process and its pipe."""

    def __init__(self, memory: int):
        ctx = forkserver_context()
        parent, child = ctx.Pipe(duplex=True)
        proc = ctx.Process(target=_child_main, args=(child, memory, os.getpid()), name="bce-audit sandbox", daemon=True)
        with no_main():
            proc.start()
        child.close()
        self.proc: BaseProcess = proc
        self.conn: Connection = parent
        self.next_id = 0
        # A child forked from the fork server starts in the server's environment, directory and
        # sys.path, as they were when the server started: give it this process's, as they are now.
        umask = os.umask(0)
        os.umask(umask)
        here = {"op": "setup", "cwd": os.getcwd(), "env": dict(os.environ), "path": list(sys.path), "umask": umask}
        parent.send_bytes(_pack({**here, "id": 0}))
        # and this process's standard error, as it is now, for everything the user's code prints
        from multiprocessing.reduction import send_handle

        send_handle(parent, _stderr_fd(), proc.pid)
        if not parent.poll(_START_TIMEOUT):
            raise EOFError("the sandbox process did not start")
        answer, _ = _unpack(parent.recv_bytes())
        if "internal" in answer:
            raise RuntimeError(f"sandbox: {answer['internal']}")

    def alive(self) -> bool:
        return self.proc.is_alive()

    def kill(self) -> None:
        """End the child and every process it started (its descendants, whatever their session).
        The pipe is closed only after: a child that saw it close would exit on its own first, and
        what it started would be orphaned out of reach (its subreaper gone)."""
        pid = self.proc.pid
        if pid is not None:
            kill_tree(pid)
        with contextlib.suppress(OSError):
            self.conn.close()
        with contextlib.suppress(Exception):
            self.proc.kill()
        with contextlib.suppress(Exception):
            self.proc.join(5)


class Sandbox:
    """Child processes for user code, one per function (and parameters), each started on first
    use; use it as a context manager (or call ``close``), which ends them all.

    timeout: seconds one request may take (an import, or one evaluation) before the child is
        killed and the request is lost.
    """

    def __init__(self, timeout: float = DEFAULT_TIMEOUT, memory: int | None = None):
        self.timeout = float(timeout)
        self.memory = memory_budget() if memory is None else memory
        self._children: dict[str, _Child] = {}
        self._spare: _Child | None = None  # started ahead of the first request (prestart)
        self._starting: threading.Thread | None = None
        self._start_error: BaseException | None = None
        self.given_up: dict[str, str] = {}  # formulation name -> why its evaluations stopped

    def prestart(self) -> None:
        """Start a child in the background (the first start waits for the fork server to import
        torch, about a second and a half), so that the caller's own work overlaps with it."""
        import threading

        if self._spare is not None or self._starting is not None or self._children:
            return

        def start() -> None:
            try:
                self._spare = _Child(self.memory)
            except BaseException as exc:  # noqa: BLE001 - the first request starts its own
                self._start_error = exc

        thread = threading.Thread(target=start, name="bce-audit sandbox start", daemon=True)
        # kept only once started: an interrupt (SIGTERM, Ctrl-C) inside start() must not leave
        # close() a thread that join() refuses ("cannot join thread before it is started")
        thread.start()
        self._starting = thread

    def _wait_for_start(self) -> None:
        thread, self._starting = self._starting, None
        if thread is not None:
            thread.join()
        self._start_error = None

    def __enter__(self) -> Sandbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def close(self) -> None:
        """End every child (and anything they started) now."""
        self._wait_for_start()
        children = list(self._children.values()) + ([self._spare] if self._spare is not None else [])
        self._children.clear()
        self._spare = None
        for child in children:
            child.kill()

    def _child(self, key: str) -> _Child:
        self._wait_for_start()
        child = self._children.get(key)
        if child is not None and child.alive():
            return child
        if child is not None:
            child.kill()
        if self._spare is not None and self._spare.alive():
            child, self._spare = self._spare, None
        else:
            child = _Child(self.memory)  # the first start waits for the fork server to import torch
        self._children[key] = child
        return child

    def _death(self, key: str) -> str:
        child = self._children.pop(key, None)
        code = None
        if child is not None:
            with contextlib.suppress(Exception):
                child.proc.join(2)
            code = child.proc.exitcode
            child.kill()
        if code is None:
            return "the process running it stopped answering"
        if code >= 0:
            return f"the process running it exited with code {code} before it answered (os._exit, or a crash)"
        try:
            name = signal.Signals(-code).name
        except ValueError:
            name = f"signal {-code}"
        hint = " (out of memory?)" if -code == signal.SIGKILL else ""
        return f"the process running it was killed by {name}{hint}"

    def request(
        self, key: str, header: dict[str, Any], payload: bytes = b"", what: str = "it"
    ) -> tuple[dict[str, Any], bytes]:
        """Send one request to the child of ``key`` and wait for its answer; EvaluationLost (with
        the reason) when none comes."""
        import time

        try:
            child = self._child(key)
            child.next_id += 1
            rid = child.next_id
            child.conn.send_bytes(_pack({**header, "id": rid}, payload))
            deadline = time.monotonic() + self.timeout
            while True:  # an answer with another id is not this request's: never taken for it
                left = deadline - time.monotonic()
                if left <= 0 or not child.conn.poll(left):
                    self._children.pop(key, None)
                    child.kill()
                    raise EvaluationLost(
                        f"{what} did not finish within {self.timeout:g} s (--timeout); its process was killed"
                    )
                answer, data = _unpack(child.conn.recv_bytes())
                if answer.get("id") == rid:
                    return answer, data
        except (EOFError, OSError):
            raise EvaluationLost(self._death(key)) from None
        except ValueError:
            self._children.pop(key, None)
            raise EvaluationLost("the process running it sent a malformed answer") from None

    # ----------------------------------------------------------------------- requests

    def describe(self, spec: UserFormulationSpec) -> dict[str, Any]:
        """Load the function in its child: its name, domain and formula text (the completed
        spec's fields); a UsageError naming the target when it cannot be loaded or called."""
        try:
            header, _ = self.request(
                child_key(spec), {"op": "describe", "spec": spec.to_wire()}, what=f"importing {spec.target}"
            )
        except EvaluationLost as exc:
            raise UsageError(f"{spec.where}: {exc}") from None
        if "usage_error" in header:
            raise UsageError(header["usage_error"])
        if "internal" in header:
            raise RuntimeError(f"sandbox: {header['internal']}")
        return header

    def refuse_a_reduction(self, spec: UserFormulationSpec) -> None:
        """A UsageError when the completed spec's loss returns one value for a batch (a mean or a
        sum: see ``refuse_a_reduction_here``). Checked apart from ``describe``, so that a function that
        kills its process or hangs when called is still found by the sweep, as lost evaluations:
        a probe that gets no answer refuses nothing (one that hung gives up on the function, as
        a hung evaluation would)."""
        assert spec.name is not None  # a completed spec
        try:
            probe = {"op": "probe", "spec": spec.to_wire()}
            header, _ = self.request(child_key(spec), probe, what=f"a first call of {spec.name}")
        except EvaluationLost as exc:
            if "did not finish within" in str(exc):  # every evaluation would hang as long
                self.given_up[spec.name] = str(exc)
            return
        if "usage_error" in header:
            raise UsageError(header["usage_error"])
        if "internal" in header:
            raise RuntimeError(f"sandbox: {header['internal']}")

    def evaluate(
        self,
        spec: UserFormulationSpec,
        domain: Domain,
        dtype: DType,
        finite: np.ndarray,
        nonfinite: np.ndarray,
        label: float,
        mode: Mode = Mode.EAGER,
    ) -> GridEvaluation:
        """``evaluate_grid`` in the spec's child, in the torch engine's execution ``mode`` (eager,
        vmap or autocast; the caller refuses compile); a lost GridEvaluation when no answer comes."""
        assert spec.name is not None  # a completed spec (formulations.user.load)
        n, m = len(finite), len(nonfinite)
        given_up = self.given_up.get(spec.name)
        if given_up is not None:
            return GridEvaluation.lost_as(f"not run: {given_up}", n, m)
        header = {
            "op": "evaluate",
            "spec": spec.to_wire(),
            "domain": str(domain),
            "dtype": str(dtype),
            "label": float(label).hex(),
            "finite": n,
            "nonfinite": m,
            **({"mode": str(mode)} if mode is not Mode.EAGER else {}),
        }
        payload = np.concatenate([finite, nonfinite]).astype("<f8").tobytes()
        where = f"{spec.name} at {dtype} {domain} y={label:g}"
        try:
            answer, data = self.request(child_key(spec), header, payload, what=f"evaluating {spec.name}")
        except EvaluationLost as exc:
            reason = str(exc)
            if "did not finish within" in reason:  # every later call would hang as long
                self.given_up[spec.name] = f"{spec.name} hung earlier ({where})"
            return GridEvaluation.lost_as(reason, n, m)
        if "internal" in answer:
            raise RuntimeError(f"sandbox: {answer['internal']}")
        values = np.frombuffer(data, dtype="<f8").astype(np.float64)
        errors = answer.get("errors")
        if len(values) != 2 * (n + m) or not isinstance(errors, list) or len(errors) != 1 + m:
            return GridEvaluation.lost_as("the process running it sent a malformed answer", n, m)
        loss, grad = values[: n + m], values[n + m :]
        output_dtype = answer.get("output_dtype")
        finite_ev = Evaluation(
            loss[:n].copy(), grad[:n].copy(), errors[0], output_dtype if isinstance(output_dtype, str) else None
        )
        singles = tuple(
            Evaluation(loss[n + i : n + i + 1].copy(), grad[n + i : n + i + 1].copy(), errors[1 + i]) for i in range(m)
        )
        out_of_mem = next((e for e in errors if out_of_memory(e)), None)
        if out_of_mem is not None:
            limit = f"{self.memory / 2**30:.3g} GiB"
            return GridEvaluation.lost_as(f"ran out of memory (limit {limit} above start-up): {out_of_mem}", n, m)
        return GridEvaluation(finite_ev, singles)

    def trace(
        self,
        spec: UserFormulationSpec,
        domain: Domain,
        dtype: DType,
        points: list[float],
        label: float,
        layout: str,
    ) -> list[dict[str, Any]]:
        """The traces of ``engines.torch_trace.trace_points`` run in the spec's child, as wire
        data; EvaluationLost (with the reason) when no answer comes."""
        header = {
            "op": "trace",
            "spec": spec.to_wire(),
            "domain": str(domain),
            "dtype": str(dtype),
            "label": float(label).hex(),
            "points": [float(p).hex() for p in points],
            "layout": layout,
        }
        answer, _ = self.request(child_key(spec), header, what=f"tracing {spec.name}")
        if "usage_error" in answer:
            raise UsageError(answer["usage_error"])
        if "internal" in answer:
            raise RuntimeError(f"sandbox: {answer['internal']}")
        traces = answer.get("traces")
        if not isinstance(traces, list) or len(traces) != len(points):
            raise EvaluationLost("the process running it sent a malformed answer")
        return traces


def _stderr_fd() -> int:
    """The descriptor of this process's standard error (2 unless sys.stderr was moved)."""
    try:
        return sys.stderr.fileno()
    except (AttributeError, ValueError, OSError):
        return 2


# --------------------------------------------------------------------------- the child's side


def _limit_memory(budget: int) -> None:
    with contextlib.suppress(Exception):
        import resource

        with open("/proc/self/statm") as f:
            size = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        soft, hard = resource.getrlimit(resource.RLIMIT_AS)
        limit = size + budget
        if hard != resource.RLIM_INFINITY:
            limit = min(limit, hard)
        resource.setrlimit(resource.RLIMIT_AS, (limit, hard))


def _become_sandbox(memory: int, main_pid: int) -> None:
    with contextlib.suppress(OSError):
        os.setpgid(0, 0)  # its own process group: killed as one, deaf to the terminal's Ctrl-C
    die_with_parent(main_pid)
    become_subreaper()  # what the user's code starts, even in a new session, stays below it
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    # whatever the user's code prints, at any level, goes to stderr, never into a report on stdout
    with contextlib.suppress(OSError, ValueError, AttributeError):
        os.dup2(sys.stderr.fileno(), 1)
    sys.stdout = sys.stderr
    _limit_memory(memory)


def _child_main(conn: Connection, memory: int, main_pid: int) -> None:
    _become_sandbox(memory, main_pid)
    me = os.getpid()
    # torch (and numpy) before any user code: a module of the user's named like one of them can
    # then never replace it
    import torch  # noqa: F401

    from bce_audit.engines.torch_state import canonical

    canonical()  # the audit's state, made before any user code runs
    loaded: dict[str, Formulation] = {}  # by the spec's JSON
    while True:
        try:
            message = conn.recv_bytes()
        except (EOFError, OSError):
            return
        rid = None
        try:
            header, payload = _unpack(message)
            rid = header.get("id")
            reply = _serve(header, payload, loaded, conn)
        except BaseException as exc:  # noqa: BLE001 - whatever happens, the parent gets an answer
            reply = ({"internal": describe(exc)}, b"")
        if os.getpid() != me:  # a copy the user's code forked, back in our code: it never answers
            os._exit(0)
        try:
            conn.send_bytes(_pack({**reply[0], "id": rid}, reply[1]))
        except (OSError, ValueError):
            return


def _serve(
    header: dict[str, Any], payload: bytes, loaded: dict[str, Formulation], conn: Connection
) -> tuple[dict[str, Any], bytes]:
    from bce_audit.engines import get_engine
    from bce_audit.engines.torch_state import pinned
    from bce_audit.formulations.interface import UserFormulationSpec
    from bce_audit.formulations.user import complete_here, load_here

    if header["op"] == "setup":
        from multiprocessing.reduction import recv_handle

        err = recv_handle(conn)  # the parent's standard error, for everything user code prints
        os.dup2(err, 1)
        os.dup2(err, 2)
        os.close(err)
        os.chdir(header["cwd"])
        os.environ.clear()
        os.environ.update(header["env"])
        sys.path[:] = header["path"]
        os.umask(header["umask"])
        return {}, b""
    spec = UserFormulationSpec.from_wire(header["spec"])
    key = json.dumps(header["spec"], sort_keys=True)
    formulation: Formulation | None
    if header["op"] == "describe":
        try:
            with quiet_tensorflow():  # the user's module may import TensorFlow (or another C++ logger)
                done = complete_here(spec, pin=pinned)
                formulation = load_here(done, pin=pinned)
        except UsageError as exc:
            return {"usage_error": str(exc)}, b""
        loaded[key] = formulation
        completed = dataclasses.replace(done, formula=formulation.formula, engine=formulation.engine)
        return {"spec": completed.to_wire()}, b""
    if header["op"] == "probe":
        formulation = loaded.get(key)
        try:
            if formulation is None:
                formulation = loaded[key] = _load(spec)
            refuse_a_reduction_here(formulation, spec.where)
        except UsageError as exc:
            return {"usage_error": str(exc)}, b""
        return {}, b""
    if header["op"] == "evaluate":
        from bce_audit.vocabulary import Domain, DType

        formulation = loaded.get(key)
        if formulation is None:
            try:
                formulation = loaded[key] = _load(spec)
            except UsageError as exc:
                return {"usage_error": str(exc)}, b""
        n, m = int(header["finite"]), int(header["nonfinite"])
        values = np.frombuffer(payload, dtype="<f8").astype(np.float64)
        args = (formulation, Domain(header["domain"]), DType(header["dtype"]), values[:n], values[n : n + m])
        label = float.fromhex(header["label"])
        if "mode" in header:  # the caller sends a mode other than eager only for torch
            from bce_audit.engines.torch_engine import TorchEngine

            ev = TorchEngine().evaluate_grid(*args, label, mode=Mode(header["mode"]))
        else:
            ev = get_engine(formulation.engine).evaluate_grid(*args, label)
        loss = np.concatenate([ev.finite.loss, *(e.loss for e in ev.nonfinite)])
        grad = np.concatenate([ev.finite.grad, *(e.grad for e in ev.nonfinite)])
        errors = [ev.finite.error, *(e.error for e in ev.nonfinite)]
        answer = {"errors": errors, **({"output_dtype": ev.finite.output_dtype} if ev.finite.output_dtype else {})}
        return answer, np.concatenate([loss, grad]).astype("<f8").tobytes()
    if header["op"] == "trace":
        from bce_audit.engines.torch_trace import trace_points
        from bce_audit.explanation.interface import Layout
        from bce_audit.vocabulary import Domain, DType

        formulation = loaded.get(key)
        if formulation is None:
            try:
                formulation = loaded[key] = _load(spec)
            except UsageError as exc:
                return {"usage_error": str(exc)}, b""
        traces = trace_points(
            formulation,
            Domain(header["domain"]),
            DType(header["dtype"]),
            [float.fromhex(p) for p in header["points"]],
            float.fromhex(header["label"]),
            Layout(header["layout"]),
        )
        return {"traces": traces}, b""
    raise ValueError(f"unknown request {header.get('op')!r}")


def _load(spec: UserFormulationSpec) -> Formulation:
    """A user's formulation loaded here, TensorFlow's C++ log lines kept off standard error if
    its module imports it (``engines.native_logs``)."""
    from bce_audit.engines.torch_state import pinned
    from bce_audit.formulations.user import load_here

    with quiet_tensorflow():
        return load_here(spec, pin=pinned)


def refuse_a_reduction_here(formulation: Formulation, where: str) -> None:
    """A UsageError, before any sweep work, when the loss returns one value for a batch (a mean or
    a sum): its figures would be a mean's, never an elementwise audit. Three float64 points of its
    own domain, at label 1; any other failure is left for the sweep's error rows."""
    from bce_audit.engines import get_engine
    from bce_audit.errors import MissingExtra, ReducedLoss
    from bce_audit.vocabulary import Domain, DType

    points = np.array([-1.0, 0.0, 1.0]) if formulation.native_domain is Domain.LOGITS else np.array([0.25, 0.5, 0.75])
    try:
        engine = get_engine(formulation.engine)
    except MissingExtra:  # the sweep's own check says so, naming the formulation
        return
    ev = engine.evaluate_grid(formulation, formulation.native_domain, DType.FLOAT64, points, np.array([]), 1.0).finite
    if ev.error is not None and ev.error.startswith(f"{ReducedLoss.__name__}: "):
        raise UsageError(f"{where}: the loss {ev.error.removeprefix(f'{ReducedLoss.__name__}: ')}")
