"""NRP v4 main script of tf_exchange: step the simulation one step at a time until its time is up.

The Simulation Server runs this file with the globals ``nrp``, ``NRPSimulationTimeout`` and
``file_logger`` already defined.
"""

file_logger.info("tf_exchange: starting, %s steps available", nrp.max_timesteps)
steps = 0
while True:
    try:
        nrp.run_loop(1)
    except NRPSimulationTimeout:
        file_logger.info("tf_exchange: simulation timeout after %s steps", steps)
        break
    steps += 1
    file_logger.debug("tf_exchange: step %s done, simulation time %.2f s", steps, nrp.simulation_time)
