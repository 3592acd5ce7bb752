"""PTF packet tests of p4src/dysco.p4 on real veth interfaces, entries over P4Runtime.

``python -m ptf_tests.run`` (``make ptf``) brings up the default target and runs them.
"""
