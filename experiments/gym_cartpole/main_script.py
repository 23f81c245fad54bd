# NRP v4 main script: step the simulation until its timeout.
file_logger.info("gym_cartpole: starting")
steps = 0
while True:
    try:
        nrp.run_loop(1)
        steps += 1
        if steps % 100 == 0:
            file_logger.debug(f"gym_cartpole: {steps} steps")
    except NRPSimulationTimeout:
        file_logger.info(f"gym_cartpole: simulation timeout after {steps} steps")
        break
