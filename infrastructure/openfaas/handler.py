"""OpenFaaS entry point of an Okyaku function (python3-http-debian template): the function's own
Lambda handler (app.py, copied from functions/<dir>) behind the OpenFaaS adapters."""

import os
import sys

# The okyaku package and app.py sit next to this file, in the template's function/ folder.
sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import app

from okyaku.openfaas import adapt

handle = adapt(app.handler)
