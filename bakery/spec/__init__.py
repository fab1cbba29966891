"""The cluster spec: cluster.yaml loaded with positions, validated (schema, then checks), built
into the model."""
