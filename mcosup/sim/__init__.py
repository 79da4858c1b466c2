"""The bundled Kubernetes API emulator, kubelet stand-in and node hosts (contract section 10): the plain
fake host and one on a real ostree sysroot.

Imported by the tests and by the ``demo``/``sim`` commands only, never by product code.
"""
