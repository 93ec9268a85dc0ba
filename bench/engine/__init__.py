"""Training one model: the loop, evaluation, checkpoints, speed and health, teachers and pretrain stages."""
