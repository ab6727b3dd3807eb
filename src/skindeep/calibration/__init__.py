"""The effective-rank calibration experiment on a small MLP (SPEC section 3): does rho predict
how robust a safety behaviour is to ablating its subspace?"""

from skindeep.calibration.experiment import (
    KS,
    LAMBDAS,
    ROBUST_K,
    RunResult,
    run_rows,
    summarise,
    sweep,
    verdict,
)

__all__ = ["KS", "LAMBDAS", "ROBUST_K", "RunResult", "run_rows", "summarise", "sweep", "verdict"]
