"""Several processes on one machine or several: TensorFlow servers and multi-worker training.

- `LocalCluster`: N `tf.distribute.Server` processes on free localhost ports, optionally
  pinned to cores, waited for until they answer, always stopped (also on errors and Ctrl-C).
- `run_workers`: a command run as N workers of a multi-worker job (each with its
  ``TF_CONFIG``), watched; a worker that dies stops the others, and the job is restarted
  (`max_restarts`) so that the command's epoch backup (`fit`'s `backup_dir`, or Keras 2's
  ``keras.callbacks.BackupAndRestore``) resumes it.
- `tf_config`: the ``TF_CONFIG`` of one task.
- `fit` / `evaluate`: a compiled model trained and evaluated under any `tf.distribute`
  strategy, Keras 3 included (whose `Model.fit` does not run multi-worker), with an epoch
  backup to resume from.

Every process started here gets its own session (Ctrl-C reaches only the parent, which stops
them) and dies with its parent on Linux (``PR_SET_PDEATHSIG``), so none is left behind.
"""

from .launcher import ClusterError, LocalCluster, free_ports, tf_config
from .training import evaluate, fit
from .workers import Worker, WorkerFailure, WorkerRun, run_workers, worker_attempt

__all__ = [
    "ClusterError",
    "LocalCluster",
    "Worker",
    "WorkerFailure",
    "WorkerRun",
    "evaluate",
    "fit",
    "free_ports",
    "run_workers",
    "tf_config",
    "worker_attempt",
]
