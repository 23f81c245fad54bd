# NRP v4 main script: step the simulation until its timeout.
file_logger.info("mujoco_pendulum: starting")
steps = 0
while True:
    try:
        nrp.run_loop(1)
        steps += 1
        if steps % 100 == 0:
            file_logger.debug(f"mujoco_pendulum: {steps} steps")
    except NRPSimulationTimeout:
        file_logger.info(f"mujoco_pendulum: simulation timeout after {steps} steps")
        break
