"""One TensorFlow server of a cluster, until it is stopped:

python -m dense_snns.distributed.server --cluster '{"worker": ["localhost:2222", ...]}' --task 0
"""

from __future__ import annotations

import argparse
import json


def main(argv=None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--cluster", required=True, help="cluster spec as JSON: job -> addresses")
    parser.add_argument("--job", default="worker")
    parser.add_argument("--task", type=int, required=True)
    parser.add_argument("--intra-op-threads", type=int, default=0)
    parser.add_argument("--inter-op-threads", type=int, default=0)
    args = parser.parse_args(argv)
    import tensorflow as tf

    config = tf.compat.v1.ConfigProto(
        intra_op_parallelism_threads=args.intra_op_threads, inter_op_parallelism_threads=args.inter_op_threads
    )
    server = tf.distribute.Server(
        tf.train.ClusterSpec(json.loads(args.cluster)),
        job_name=args.job,
        task_index=args.task,
        protocol="grpc",
        config=config,
        start=True,
    )
    server.join()


if __name__ == "__main__":
    main()
