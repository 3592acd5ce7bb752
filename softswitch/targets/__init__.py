"""Targets: each lowers the front end's checked program and the IR (:mod:`dysco.softswitch.ir`)
for one execution engine.  ``python`` generates Python source run in-process (the reference);
``ebpf`` generates C for the kernel's TC hook.  A target imports the front end and the IR,
never another target."""
