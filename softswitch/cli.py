"""``dysco p4c`` (compile a P4 program: P4Info + device config) and ``dysco stf`` (run an STF test)."""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import Any

from dysco.errors import UserError


def register(subparsers: Any) -> None:
    p = subparsers.add_parser(
        "p4c",
        help="compile a P4_16 v1model program for the softswitch; write P4Info like p4c",
        description="Check and compile a P4_16 v1model program; write its P4Info and the device config "
        "(PROGRAM.json) that `dysco switch` and SetForwardingPipelineConfig load.",
        epilog="example: dysco p4c p4src/dysco.p4 --p4runtime-files build/dysco.p4info.txtpb -o build",
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("program", help="the P4 source file")
    p.add_argument(
        "--p4runtime-files",
        default="",
        metavar="FILES",
        help="comma-separated P4Info outputs; the extension says the format: .txtpb or .txt, .json, .bin",
    )
    p.add_argument(
        "-o", "--output-dir", default=".", metavar="DIR", help="where PROGRAM.json goes (default: .)"
    )
    p.add_argument(
        "-I", dest="include_dirs", action="append", default=[], metavar="DIR", help="include directory"
    )
    p.add_argument(
        "-D", dest="defines", action="append", default=[], metavar="NAME[=VALUE]", help="define a macro"
    )
    p.add_argument(
        "--emit-python", metavar="FILE", help="also write the generated Python code (for debugging)"
    )
    p.add_argument(
        "--emit-c", metavar="FILE", help="also write the C the ebpf backend generates (for debugging)"
    )
    p.add_argument("--parse", action="store_true", help="stop after parsing and print the AST")
    p.set_defaults(handler=p4c_main)

    s = subparsers.add_parser(
        "stf",
        help="run an STF test (p4c's format) against the softswitch",
        description="Run PROGRAM with the packets and table entries of TEST.stf and compare what comes out "
        "with its `expect` lines, as p4c's bmv2 STF runner does. Exit 0 on pass, 1 with a diff on failure.",
        epilog="example: dysco stf tests/softswitch/stf/router.p4 tests/softswitch/stf/router.stf"
        " --backend ebpf",
    )
    s.add_argument("program", help="the P4 source file")
    s.add_argument("test", help="the .stf file")
    s.add_argument(
        "-I", dest="include_dirs", action="append", default=[], metavar="DIR", help="include directory"
    )
    s.add_argument(
        "-D", dest="defines", action="append", default=[], metavar="NAME[=VALUE]", help="define a macro"
    )
    s.add_argument(
        "--backend",
        choices=("python", "ebpf"),
        default="python",
        help="python (in-process, the reference) or ebpf (TC programs on veth pairs in a namespace "
        "of its own; needs root and clang-16); default python",
    )
    s.set_defaults(handler=stf_main)


def p4c_main(args: argparse.Namespace) -> int:
    from google.protobuf import json_format, text_format

    from .frontend.parse import parse
    from .frontend.preprocess import preprocess
    from .program import load_program

    if args.parse:
        print(parse(preprocess(args.program, args.include_dirs, args.defines)))
        return 0
    prog = load_program(args.program, include_dirs=args.include_dirs, defines=args.defines)
    out_dir = Path(args.output_dir)
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UserError(f"-o {out_dir}: cannot make the output directory: {exc.strerror}") from None
    _write(out_dir / (Path(args.program).stem + ".json"), prog.device_config())
    for name in filter(None, (f.strip() for f in args.p4runtime_files.split(","))):
        path = Path(name)
        if path.suffix == ".txtpb":  # text format with the header that names its message
            head = "# proto-file: p4/config/v1/p4info.proto\n# proto-message: p4.config.v1.P4Info\n\n"
            _write(path, head + text_format.MessageToString(prog.p4info))
        elif path.suffix == ".txt":  # the older name of the same text format
            _write(path, text_format.MessageToString(prog.p4info))
        elif path.suffix == ".json":
            _write(path, json_format.MessageToJson(prog.p4info))
        elif path.suffix == ".bin":
            _write(path, prog.p4info.SerializeToString())
        else:
            raise UserError(f"{name}: unknown P4Info format (use .txtpb, .txt, .json or .bin)")
    if args.emit_python:
        _write(Path(args.emit_python), prog.python_source)
    if args.emit_c:
        from .targets.ebpf.cgen import generate

        c = prog.compiled
        _write(Path(args.emit_c), generate(prog.ast, prog.source, c.types, c.errors, c.info).source)
    return 0


def _write(path: Path, data: str | bytes) -> None:
    """An output file of ``dysco p4c``; a path that cannot be written is the user's mistake."""
    try:
        if isinstance(data, bytes):
            path.write_bytes(data)
        else:
            path.write_text(data)
    except OSError as exc:
        raise UserError(f"{path}: cannot write: {exc.strerror}") from None


def stf_main(args: argparse.Namespace) -> int:
    from .program import load_program
    from .stf import run_stf

    prog = load_program(args.program, include_dirs=args.include_dirs, defines=args.defines)
    result = run_stf(prog, args.test, backend=args.backend)
    if result.passed:
        print(f"{args.test}: {result.report}")
        return 0
    print(f"{args.test}: FAILED\n{result.report}")
    return 1
