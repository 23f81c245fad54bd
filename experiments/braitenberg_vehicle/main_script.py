# NRP v4 main script: step the simulation until its timeout.
file_logger.info("braitenberg_vehicle: starting")
steps = 0
while True:
    try:
        nrp.run_loop(1)
        steps += 1
        if steps % 100 == 0:
            file_logger.debug(f"braitenberg_vehicle: {steps} steps")
    except NRPSimulationTimeout:
        file_logger.info(f"braitenberg_vehicle: simulation timeout after {steps} steps")
        break
