"""Training (and later optimisation) jobs: a queue in the registry, each job run once cluster-wide in a
subprocess of its own with memory, CPU-time and wall-clock limits.

``spec`` (what a job asks for), ``estimators`` (the allow-list with parameter schemas), ``training``
(the work, run in the child), ``worker`` (the child's entry point), ``runner`` (claiming, launching,
watching, cancelling and finishing jobs in the server).
"""
