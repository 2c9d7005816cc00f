"""Transfer learning for Bengali handwritten digits (NumtaDB), orchestrated by Airflow.

Heavy libraries (pyspark, tensorflow, great_expectations) are imported inside the functions
that use them, so DAG files can import settings from here cheaply.
"""
