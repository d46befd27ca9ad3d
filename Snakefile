# spdnn: the Sparse Deep Neural Network Graph Challenge, from data to throughput tables.
# Data flows one way: fetch or generate -> convert to the Arrow cache -> infer + validate -> report.
from snakemake.exceptions import WorkflowError
from snakemake.utils import min_version, validate

min_version("9.0")


configfile: f"{workflow.basedir}/config.yaml"


from spdnn.config import config_errors, numbers_from_strings, paths_as_strings, semantic_errors

config.update(paths_as_strings(numbers_from_strings(config)))

try:
    validate(config, "workflow/schemas/config.schema.yaml")
    problems = semantic_errors(config)  # engine options, shards: before any download or conversion
except WorkflowError:
    problems = config_errors(config, f"{workflow.basedir}/workflow/schemas/config.schema.yaml")
if problems:
    raise WorkflowError("invalid configuration:\n  " + "\n  ".join(problems))


include: "workflow/rules/common.smk"
include: "workflow/rules/data.smk"
include: "workflow/rules/tune.smk"
include: "workflow/rules/infer.smk"
include: "workflow/rules/report.smk"
include: "workflow/rules/dag.smk"


rule all:
    input:
        rules.aggregate.output,
        # the cost model's check when the tune step ran (GPU engines), the arbitrary-network runs
        # and the multi-GPU scaling when the config asks for them: each in the report only when run
        rules.model_check.output if ENGINE != "cpu" else [],
        rules.dag_table.output if "dag" in config else [],
        rules.scaling.output if "scaling" in config else [],
    default_target: True


onsuccess:
    print(f"spdnn: table in {TABLE_MD} (CSV {TABLE_CSV}, plot {PLOT})")
