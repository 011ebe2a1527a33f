"""Side-by-side benchmarks of Conveyor against its peers (``make bench``); never run by the test suite."""
