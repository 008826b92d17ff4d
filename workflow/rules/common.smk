# Shared settings of every rule: wildcard constraints from the validated params.

wildcard_constraints:
    game="|".join(PARAMS.experiment.games),
