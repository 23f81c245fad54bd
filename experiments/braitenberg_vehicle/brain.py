"""Brain of the Braitenberg vehicle (NEST): two eyes, two motor populations, crossed excitation.

Each eye drives a sensory population through a Poisson generator whose rate the transceiver function
sets from the light the eye sees; each sensory population excites the motor population of the
opposite side and inhibits the motor population of its own side (vehicle 2b, "aggression": it turns
towards the light).
A tonic drive keeps the motors turning when no light is seen. A spike recorder per side counts the
spikes of the first ``RECORDED`` motor neurons; their rate sets the wheel speed (recording a fixed
sample keeps the datapacks small whatever the size of the brain).

The size of every population is ``NEURONS`` (environment variable ``BRAITENBERG_NEURONS``, default
100); the benchmark raises it to make one NEST step cost a few milliseconds.
"""
import os

import nest
from nrp_core.engines.nest_json import CreateDataPack

NEURONS = int(os.environ.get("BRAITENBERG_NEURONS", "100"))
RECORDED = 20  # motor neurons per side whose spikes are recorded (tf_motors.py relies on it)
assert NEURONS >= RECORDED, f"BRAITENBERG_NEURONS must be at least {RECORDED}"
IN_DEGREE = 20
NEURON_PARAMS = {"tau_m": 10.0, "t_ref": 2.0}

nest.ResetKernel()

# one Poisson generator per eye, in one datapack: [left eye, right eye]
eyes = CreateDataPack("eyes", "poisson_generator", 2, params={"rate": 0.0})
drive = nest.Create("poisson_generator", params={"rate": 9000.0})

left_sensory = nest.Create("iaf_psc_alpha", NEURONS, params=NEURON_PARAMS)
right_sensory = nest.Create("iaf_psc_alpha", NEURONS, params=NEURON_PARAMS)
left_motor = nest.Create("iaf_psc_alpha", NEURONS, params=NEURON_PARAMS)
right_motor = nest.Create("iaf_psc_alpha", NEURONS, params=NEURON_PARAMS)

nest.Connect(eyes[0], left_sensory, syn_spec={"weight": 30.0})
nest.Connect(eyes[1], right_sensory, syn_spec={"weight": 30.0})
nest.Connect(drive, left_motor + right_motor, syn_spec={"weight": 25.0})

fan_in = {"rule": "fixed_indegree", "indegree": IN_DEGREE}
nest.Connect(left_sensory, right_motor, fan_in, syn_spec={"weight": 40.0, "delay": 1.0})
nest.Connect(right_sensory, left_motor, fan_in, syn_spec={"weight": 40.0, "delay": 1.0})
nest.Connect(left_sensory, left_motor, fan_in, syn_spec={"weight": -40.0, "delay": 1.0})
nest.Connect(right_sensory, right_motor, fan_in, syn_spec={"weight": -40.0, "delay": 1.0})

left_spikes = CreateDataPack("left_motor_spikes", "spike_recorder")
right_spikes = CreateDataPack("right_motor_spikes", "spike_recorder")
nest.Connect(left_motor[:RECORDED], left_spikes)
nest.Connect(right_motor[:RECORDED], right_spikes)
