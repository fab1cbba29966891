"""The plan, computed once from the model: where things live on the node (paths), what goes
into the image (image), what each node's first boot does (nodes). Packer templates, cloud-init
and the node check all read it, so the bake and the first boot can never disagree about
paths, images or versions."""
from .image import ImagePlan, image_plan, node_check_expectations
from .nodes import FIRST_BOOT, NodePlan, node_plans
from .paths import *  # noqa: F403  (the node paths, as plan.SENTINEL etc.)
