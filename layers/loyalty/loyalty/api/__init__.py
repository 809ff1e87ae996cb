"""The HTTP edge: Powertools resolvers, request models, credentials and the error shape."""
