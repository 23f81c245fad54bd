"""Code shared by the REST server, the Simulation Server and the storage server.

Nothing here reads the environment or touches the network at import time.
"""
