"""Models-from-code entry for the ``clv_model`` pyfunc: MLflow executes this file when it logs
or loads the model. Not imported by the package (it registers the model on execution)."""

import mlflow

from clvflow.mlops.pyfunc import ClvPyfunc

mlflow.models.set_model(ClvPyfunc())
