"""The long-running coordinator service (`phalanx serve`) and what it is made of."""
