"""Why a formulation fails, down to the op: a traced run (``engines.torch_trace``), every op
judged against its exact model (``oracle.ops``), the chain that lost the value, and the fix
catalogue (``fixes``). ``bce_audit.explain`` is the entry point; ``report.explanation`` renders.

Named ``explanation``, not ``explain``: a subpackage ``explain`` would replace the function
``bce_audit.explain`` as an attribute of the package the moment one of its modules is imported.
This package's ``__init__`` imports nothing.
"""
