"""What every stage stands on, and nothing of the stages: typed errors with exit codes (errors), progress
lines (progress), atomic writes and manifests (artifacts), stage folders written whole and read verified
(run_folder), metrics (metrics), bootstrap resampling and intervals (bootstrap, intervals), the clock of a
time budget and its rule (budget), the lazy package facades (lazy) and the version (version). `features` may
import this package and nothing else of `pipeline`."""
