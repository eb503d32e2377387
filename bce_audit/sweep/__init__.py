"""A sweep, the audit itself: the grid of inputs (``grid``), the error of each point and the
figures of each case (``metrics``), the run that puts the engines and the oracle to work over
every case (``run``), and what comes out (``result``).

(Not called ``audit``: a subpackage of that name would replace the function ``bce_audit.audit``
as an attribute of the package the moment one of its modules is imported.)"""
