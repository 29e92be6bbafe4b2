"""Many scenes on a cluster: manifests, Ray actors and a results table, on the scene engine.

``terramind.batch.run(job, manifest, output, cluster=Cluster(workers=2))`` runs one job (:mod:`.jobs`:
generate, embed, zeroshot-water, predict) over every scene of a manifest (:mod:`.manifest`) on Ray
(:mod:`.runner`) and records each scene in a results table (:mod:`.results`). Ray, pandas and pyarrow come
with the ``batch`` extra; they are imported only when a batch runs, so a base install imports this package.
"""

from terramind.batch.jobs import JOBS, EmbedJob, GenerateJob, PredictJob, SceneDone, WaterJob
from terramind.batch.manifest import Scene, read_manifest
from terramind.batch.results import SceneRecord, read_results
from terramind.batch.runner import BatchReport, Cluster, check_address, run

__all__ = [
    "JOBS",
    "BatchReport",
    "Cluster",
    "EmbedJob",
    "GenerateJob",
    "PredictJob",
    "Scene",
    "SceneDone",
    "SceneRecord",
    "WaterJob",
    "check_address",
    "read_manifest",
    "read_results",
    "run",
]
