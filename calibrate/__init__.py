"""Calibration of the driving face: neutral pose, relative motion, adapt scale, smoothing."""
