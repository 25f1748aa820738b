"""`python -m schedules plot ...`: see schedules/plot.py."""
from schedules.plot import main

main()
