"""The Spark engine (``--engine spark``): the same cleaned transactions, data-quality counts and
feature table as the single-machine engine, computed with Spark DataFrame operations.

Optional: needs the ``clvflow[spark]`` extra (pyspark) and Java 17. pyspark is imported only inside
this package, and only when a function here runs, so clvflow works without it.
"""
