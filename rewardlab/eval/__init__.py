"""Agreement, calibration and bias metrics, and the plots and reports built on them."""
