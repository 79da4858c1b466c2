"""The bundled Kubernetes API emulator, kubelet stand-in and fake host (contract section 10).

Imported by the tests and by the ``demo``/``sim`` commands only, never by product code.
"""
