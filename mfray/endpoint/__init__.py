"""The simulation endpoint: create simulations of events over HTTP, stream their steps (Server-Sent
Events), pause, resume, cancel, intervene, fork what-ifs, fetch trajectories, metrics against the
real event and plots, and watch it all on a web page served by the same app.

- schemas.py: request models and their limits (pydantic; every bad request is a clear 4xx).
- catalog.py: events the server may simulate: stored ones by id, uploads saved under its store.
- simulation.py: one simulation: a live session driven in the background, its step stream.
- host.py: the simulations of one server: live limit, persistence, found again after a restart.
- app.py: the FastAPI app (routes, auth, errors) and the page (static/).
The live sessions come from a factory: in this process (`mfray endpoint`, no cluster), or one Ray
event actor each (mfray.ray.sim_endpoint, a Ray Serve deployment).
"""
