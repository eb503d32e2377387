"""An audit: the grid of inputs (``grid``), the error of each point and the figures of each case
(``metrics``), the pipeline that runs the engines and the oracle over every case (``sweep``),
and what comes out (``result``)."""
