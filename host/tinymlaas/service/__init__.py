"""The service layer: fit-to-device selection, deployments, and the Service object that ties the registry, the
back-ends and the LwM2M server together."""
