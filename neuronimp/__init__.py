"""neuronimp: how important is a neuron?"""
__version__ = "0.1.0"
