"""Brain: a Poisson generator pair driving one neuron, and a voltmeter on that neuron."""

import nest

from nrp_core.engines.nest_json import CreateDataPack, RegisterDataPack

nest.ResetKernel()

noise = CreateDataPack("noise", "poisson_generator", 2)
neuron = nest.Create("iaf_psc_alpha")
voltmeter = nest.Create("voltmeter", params={"interval": 1.0})
RegisterDataPack("voltage", voltmeter)

nest.SetStatus(noise, {"rate": 15000.0})
nest.Connect(noise, neuron, syn_spec={"weight": [[1.2, -1.0]], "delay": 1.0})
nest.Connect(voltmeter, neuron)
