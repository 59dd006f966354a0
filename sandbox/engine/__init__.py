"""Ground floor: the one container-engine client (endpoint, HTTP codec, API calls, errors).

Imports nothing of sandbox above `errors` and `host`; knows no policy, prints nothing.
"""
