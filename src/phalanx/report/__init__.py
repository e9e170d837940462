"""Reports written into a run folder: results.json (`report/json.py`),
JUnit XML (`junit.py`), TAP (`tap.py`), report.html (`html.py`); written
together by `writers.py`.

Each writer takes a finished `RunResult`; none of them talks to the engine.
Nothing is imported here: the commands that only parse arguments, and a run
until it writes its reports, go without ElementTree, YAML and Jinja2.
"""
