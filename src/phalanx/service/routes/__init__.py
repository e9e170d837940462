"""The REST API's routers, one module per area (service/api.py builds the
app from them). Each reads the service and who asks through FastAPI
dependencies (routes/deps.py), never through a closure."""
