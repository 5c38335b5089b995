"""The benchmarks (bench/README.md). A regular package, not a namespace one: a benchmark measuring another
checkout (PYTHONPATH=<checkout>, bench/README.md "Before and after") still imports this checkout's
``bench.support``, since a regular package wins over a same-named directory earlier on the path."""
