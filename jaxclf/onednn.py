"""oneDNN's CPU convolutions inside jitted programs, as XLA FFI custom calls.

Why: on CPU, XLA runs convolutions with Eigen and YNNPACK kernels that reached 0.24-0.86
of PyTorch's (oneDNN's) speed on ResNet-20's and VGG's 3x3 layers, and convolutions were
two thirds of a ResNet-20 step. oneDNN's kernels on the same NHWC buffers are 1.3-5.5x
faster (benchmarks/RESULTS.md).

How: a primitive (forward, input gradient or kernel gradient of one convolution shape) is
built when the program is traced, and registered as an FFI target named after its shape.
The handler XLA calls is a ctypes callback: it reads the buffers' addresses from XLA's call
frame (``xla/ffi/api/c_api.h``), points oneDNN memory objects at them and executes the
primitive, so nothing is copied and no compiler is needed at install time. Weights are
reordered into the layout oneDNN chooses in a workspace that XLA allocates with the outputs.

Library: oneDNN 3.2 built with GNU OpenMP (PyPI ``onednn-cpu-gomp``, a dependency on x86-64
Linux). ``JAXCLF_CONV`` chooses: ``auto`` (default: oneDNN for float32 2-D convolutions on a
single CPU device when the library loads, else XLA with a logged reason), ``onednn`` (the
same, but an error instead of XLA when the library does not load) or ``xla``. It is read
when a function is traced, so set it before a program first runs: jit reuses earlier traces.
"""

from __future__ import annotations

import atexit
import ctypes as C
import functools
import importlib.metadata
import logging
import os
import threading
from typing import Callable, NamedTuple

import jax
import jax.numpy as jnp

SETTING = "JAXCLF_CONV"
CHOICES = ("auto", "onednn", "xla")
DISTRIBUTION = "onednn-cpu-gomp"

# oneDNN 3.x C API constants (include/oneapi/dnnl/dnnl_types.h).
_F32, _CPU, _FORMAT_ANY, _STREAM_IN_ORDER = 3, 1, 1, 1
_FORWARD_TRAINING, _CONVOLUTION_DIRECT = 64, 1
_ARG_SRC, _ARG_DST, _ARG_WEIGHTS = 1, 17, 33
_ARG_DIFF_SRC, _ARG_DIFF_DST, _ARG_DIFF_WEIGHTS = 129, 145, 161
_QUERY_IMPL_INFO = 8
_QUERY_WEIGHTS_MD, _QUERY_DIFF_WEIGHTS_MD = 131, 132
_STATUS = {1: "out of memory", 2: "invalid arguments", 3: "unimplemented", 5: "runtime error"}
_Dims = C.c_int64 * 12


# ----------------------------------------------------------------------------- the library


@functools.cache
def _library() -> C.CDLL:
    """libdnnl from the ``onednn-cpu-gomp`` wheel (installed under the environment's lib/)."""
    try:
        dist = importlib.metadata.distribution(DISTRIBUTION)
    except importlib.metadata.PackageNotFoundError:
        raise OSError(f"the Python package {DISTRIBUTION!r} is not installed (it is a dependency "
                      "on x86-64 Linux only)") from None
    paths = [dist.locate_file(f) for f in dist.files or () if str(f).endswith("libdnnl.so.3")]
    if not paths:
        raise OSError(f"{DISTRIBUTION!r} has no libdnnl.so.3")
    # OpenMP threads that spin between calls would take the cores XLA's own threads use
    # for the fusions in between; GNU OpenMP reads this when it loads.
    os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
    lib = C.CDLL(str(paths[0]))
    lib.dnnl_primitive_desc_query_md.restype = C.c_void_p
    lib.dnnl_memory_desc_get_size.restype = C.c_size_t
    return lib


def _check(status: int, what: str) -> None:
    if status != 0:
        raise RuntimeError(f"oneDNN: {what} failed: {_STATUS.get(status, f'status {status}')}")


@functools.cache
def _engine() -> C.c_void_p:
    engine = C.c_void_p()
    _check(_library().dnnl_engine_create(C.byref(engine), _CPU, C.c_size_t(0)), "engine creation")
    return engine


_streams = threading.local()


def _stream() -> C.c_void_p:
    """One stream per thread: XLA may run two convolutions at once on its threads."""
    if not hasattr(_streams, "stream"):
        _streams.stream = C.c_void_p()
        _check(_library().dnnl_stream_create(C.byref(_streams.stream), _engine(), C.c_uint(_STREAM_IN_ORDER)),
               "stream creation")
    return _streams.stream


def load_error() -> str | None:
    """Why oneDNN cannot be used here (None when it can)."""
    try:
        _engine()
    except OSError as e:
        return str(e)
    return None


def setting() -> str:
    value = os.environ.get(SETTING, "auto") or "auto"
    if value not in CHOICES:
        raise ValueError(f"{SETTING}={value!r} is not a valid choice; valid: {', '.join(CHOICES)}")
    return value


@functools.cache
def _log_fallback(reason: str) -> None:
    logging.getLogger(__name__).warning("convolutions run on XLA, not oneDNN: %s (set %s=xla to choose "
                                        "XLA explicitly)", reason, SETTING)


def _single_device() -> bool:
    """Programs run on one device. The custom calls have no partitioning rule: in a program
    sharded over several devices XLA would gather the whole batch onto each of them."""
    return jax.device_count() == 1


def use_for(x, w, pads) -> bool:
    """Whether ``conv`` should compute this channels-last convolution (see the module doc)."""
    choice = setting()
    if choice == "xla":
        return False
    if not (x.ndim == 4 and x.dtype == jnp.float32 and w.dtype == jnp.float32):
        return False
    if any(p < 0 for pair in pads for p in pair):
        return False  # cropping: oneDNN takes padding only
    if jax.default_backend() != "cpu" or not _single_device():
        return False  # GPU/TPU have their own libraries; sharded batches are XLA's to split
    reason = load_error()
    if reason is None:
        return True
    if choice == "onednn":
        raise RuntimeError(f"{SETTING}=onednn but oneDNN cannot be loaded: {reason}")
    _log_fallback(reason)
    return False


# ----------------------------------------------------------------------------- primitives


class Spec(NamedTuple):
    """One 2-D convolution: NHWC input, HWIO kernel, strides, ((top, bottom), (left, right))."""

    x_shape: tuple[int, int, int, int]
    w_shape: tuple[int, int, int, int]
    strides: tuple[int, int]
    pads: tuple[tuple[int, int], tuple[int, int]]

    @property
    def y_shape(self) -> tuple[int, int, int, int]:
        n, h, w, _ = self.x_shape
        kh, kw, _, o = self.w_shape
        (t, b), (l, r) = self.pads
        return n, (h + t + b - kh) // self.strides[0] + 1, (w + l + r - kw) // self.strides[1] + 1, o

    @property
    def name(self) -> str:
        (t, b), (l, r) = self.pads
        return ("x".join(map(str, self.x_shape)) + "_k" + "x".join(map(str, self.w_shape))
                + f"_s{self.strides[0]}x{self.strides[1]}_p{t}x{b}x{l}x{r}")


def _dims(values) -> _Dims:
    return _Dims(*values)


def _strided_md(dims, strides) -> C.c_void_p:
    md = C.c_void_p()
    _check(_library().dnnl_memory_desc_create_with_strides(C.byref(md), len(dims), _dims(dims), _F32,
                                                            _dims(strides)), "memory descriptor")
    return md


def _nhwc_md(shape) -> C.c_void_p:
    """An NHWC buffer as oneDNN's logical (N, C, H, W) tensor."""
    n, h, w, c = shape
    return _strided_md((n, c, h, w), (h * w * c, 1, w * c, c))


def _hwio_md(shape) -> C.c_void_p:
    """An HWIO kernel as oneDNN's logical (O, I, KH, KW) tensor."""
    kh, kw, i, o = shape
    return _strided_md((o, i, kh, kw), (1, o, kw * i * o, i * o))


def _any_md(shape) -> C.c_void_p:
    """A kernel in whatever layout the primitive runs fastest with."""
    kh, kw, i, o = shape
    md = C.c_void_p()
    _check(_library().dnnl_memory_desc_create_with_tag(C.byref(md), 4, _dims((o, i, kh, kw)), _F32, _FORMAT_ANY),
           "memory descriptor")
    return md


def _geometry(spec: Spec):
    """strides, dilations (none), left and right padding as oneDNN arrays."""
    (t, b), (l, r) = spec.pads
    return _dims(spec.strides), _dims((0, 0)), _dims((t, l)), _dims((b, r))


def _forward_pd(spec: Spec, x_md, y_md) -> C.c_void_p:
    pd = C.c_void_p()
    _check(_library().dnnl_convolution_forward_primitive_desc_create(
        C.byref(pd), _engine(), _FORWARD_TRAINING, _CONVOLUTION_DIRECT, x_md, _any_md(spec.w_shape), None, y_md,
        *_geometry(spec), None), f"forward convolution {spec.name}")
    return pd


class _Reorder(NamedTuple):
    """Copies a kernel between the HWIO layout and the primitive's own."""

    primitive: C.c_void_p
    size: int  # bytes of the kernel in the primitive's layout


class Primitive(NamedTuple):
    """An executable primitive: the oneDNN argument slot and memory layout of each of its
    (first input, second input, output), and how its kernel (an input, or the output of the
    kernel gradient) moves between HWIO and the primitive's own layout through ``workspace``
    bytes."""

    primitive: C.c_void_p
    slots: tuple[int, int, int]
    mds: tuple[C.c_void_p, C.c_void_p, C.c_void_p]
    kernel_md: C.c_void_p  # the kernel's layout inside the primitive
    reorder: _Reorder | None
    kernel_is_output: bool

    @property
    def workspace(self) -> int:
        return self.reorder.size if self.reorder else 0


def _make_primitive(pd: C.c_void_p, slots, mds, kernel_query: int) -> Primitive:
    """``slots`` and ``mds``: (first input, second input, output); the kernel is the second
    input, or the output when ``kernel_query`` asks for the kernel gradient."""
    lib = _library()
    primitive = C.c_void_p()
    _check(lib.dnnl_primitive_create(C.byref(primitive), pd), "primitive creation")
    kernel_md = C.c_void_p(lib.dnnl_primitive_desc_query_md(pd, kernel_query, 0))
    kernel_is_output = kernel_query == _QUERY_DIFF_WEIGHTS_MD
    hwio = mds[2 if kernel_is_output else 1]
    reorder = None
    if not lib.dnnl_memory_desc_equal(kernel_md, hwio):
        src, dst = (kernel_md, hwio) if kernel_is_output else (hwio, kernel_md)
        rpd, rprim = C.c_void_p(), C.c_void_p()
        _check(lib.dnnl_reorder_primitive_desc_create(C.byref(rpd), src, _engine(), dst, _engine(), None),
               "kernel reorder")
        _check(lib.dnnl_primitive_create(C.byref(rprim), rpd), "kernel reorder")
        reorder = _Reorder(rprim, int(lib.dnnl_memory_desc_get_size(kernel_md)))
    info = C.c_char_p()
    lib.dnnl_primitive_desc_query(pd, _QUERY_IMPL_INFO, 0, C.byref(info))
    logging.getLogger(__name__).debug("oneDNN kernel %s (slots %s)", info.value, slots)  # e.g. brgconv:avx512_core
    return Primitive(primitive, slots, mds, kernel_md, reorder, kernel_is_output)


PARTS = ("forward", "input_gradient", "kernel_gradient")


@functools.cache
def primitive(part: str, spec: Spec) -> Primitive:
    """The primitive computing one part of a convolution (see ``PARTS``)."""
    lib = _library()
    x, w, y = _nhwc_md(spec.x_shape), _hwio_md(spec.w_shape), _nhwc_md(spec.y_shape)
    fwd, pd = _forward_pd(spec, x, y), C.c_void_p()
    if part == "forward":  # (input, kernel) -> output
        return _make_primitive(fwd, (_ARG_SRC, _ARG_WEIGHTS, _ARG_DST), (x, w, y), _QUERY_WEIGHTS_MD)
    if part == "input_gradient":  # (output gradient, kernel) -> input gradient
        _check(lib.dnnl_convolution_backward_data_primitive_desc_create(
            C.byref(pd), _engine(), _CONVOLUTION_DIRECT, x, _any_md(spec.w_shape), y, *_geometry(spec), fwd, None),
            f"input gradient {spec.name}")
        return _make_primitive(pd, (_ARG_DIFF_DST, _ARG_WEIGHTS, _ARG_DIFF_SRC), (y, w, x), _QUERY_WEIGHTS_MD)
    if part == "kernel_gradient":  # (input, output gradient) -> kernel gradient
        _check(lib.dnnl_convolution_backward_weights_primitive_desc_create(
            C.byref(pd), _engine(), _CONVOLUTION_DIRECT, x, _any_md(spec.w_shape), None, y, *_geometry(spec), fwd,
            None), f"kernel gradient {spec.name}")
        return _make_primitive(pd, (_ARG_SRC, _ARG_DIFF_DST, _ARG_DIFF_WEIGHTS), (x, y, w), _QUERY_DIFF_WEIGHTS_MD)
    raise ValueError(f"unknown convolution part {part!r}; valid: {', '.join(PARTS)}")


def _memory(md, address) -> C.c_void_p:
    memory = C.c_void_p()
    _check(_library().dnnl_memory_create(C.byref(memory), md, _engine(), C.c_void_p(address)), "memory")
    return memory


class _Arg(C.Structure):
    _fields_ = [("arg", C.c_int), ("memory", C.c_void_p)]


def _execute(primitive_handle, args) -> None:
    lib, stream = _library(), _stream()
    packed = (_Arg * len(args))(*(_Arg(a, m) for a, m in args))
    _check(lib.dnnl_primitive_execute(primitive_handle, stream, len(args), packed), "execution")
    _check(lib.dnnl_stream_wait(stream), "execution")


def run(p: Primitive, addresses: tuple[int, int, int], workspace: int) -> None:
    """Executes ``p`` on the buffers at ``addresses`` (first input, second input, output);
    the kernel is reordered through the buffer at ``workspace`` when its layouts differ."""
    memories = [_memory(md, a) for md, a in zip(p.mds, addresses)]
    try:
        args = list(zip(p.slots, memories))
        if p.reorder is not None:
            memories.append(_memory(p.kernel_md, workspace))
            k = 2 if p.kernel_is_output else 1
            hwio, blocked = args[k][1], memories[-1]
            args[k] = (p.slots[k], blocked)
            if not p.kernel_is_output:
                _execute(p.reorder.primitive, [(_ARG_SRC, hwio), (_ARG_DST, blocked)])
        _execute(p.primitive, args)
        if p.reorder is not None and p.kernel_is_output:
            _execute(p.reorder.primitive, [(_ARG_SRC, blocked), (_ARG_DST, hwio)])
    finally:
        for m in memories:
            _library().dnnl_memory_destroy(m)


# ----------------------------------------------------------------------------- XLA FFI handlers
# The structures of xla/ffi/api/c_api.h the handler reads or writes (FFI API 0.x).


class _ExtensionBase(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("type", C.c_int), ("next", C.c_void_p)]


class _ApiVersion(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("extension_start", C.c_void_p),
                ("major", C.c_int), ("minor", C.c_int)]


class _Metadata(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("api_version", _ApiVersion), ("traits", C.c_uint32),
                ("state_type_id", C.c_int64)]


class _MetadataExtension(C.Structure):
    _fields_ = [("base", _ExtensionBase), ("metadata", C.POINTER(_Metadata))]


class _Buffer(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("extension_start", C.c_void_p), ("dtype", C.c_int),
                ("data", C.c_void_p), ("rank", C.c_int64), ("dims", C.POINTER(C.c_int64))]


class _Buffers(C.Structure):  # XLA_FFI_Args and XLA_FFI_Rets
    _fields_ = [("struct_size", C.c_size_t), ("extension_start", C.c_void_p), ("size", C.c_int64),
                ("types", C.c_void_p), ("buffers", C.POINTER(C.POINTER(_Buffer)))]


class _Attrs(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("extension_start", C.c_void_p), ("size", C.c_int64),
                ("types", C.c_void_p), ("names", C.c_void_p), ("attrs", C.c_void_p)]


class _CallFrame(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("extension_start", C.POINTER(_ExtensionBase)),
                ("api", C.c_void_p), ("ctx", C.c_void_p), ("stage", C.c_int), ("args", _Buffers),
                ("rets", _Buffers), ("attrs", _Attrs), ("future", C.c_void_p)]


class _ErrorCreateArgs(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("extension_start", C.c_void_p), ("message", C.c_char_p),
                ("errc", C.c_int)]


_ErrorCreate = C.CFUNCTYPE(C.c_void_p, C.POINTER(_ErrorCreateArgs))


class _Api(C.Structure):
    _fields_ = [("struct_size", C.c_size_t), ("extension_start", C.c_void_p), ("api_version", _ApiVersion),
                ("internal_api", C.c_void_p), ("error_create", _ErrorCreate)]


_Handler = C.CFUNCTYPE(C.c_void_p, C.POINTER(_CallFrame))
FFI_API_VERSION = (0, 3)  # of the c_api.h these structures follow (jaxlib 0.10.2)
_METADATA_EXTENSION, _ERROR_INTERNAL = 1, 13
_handlers: dict[str, _Handler] = {}  # registered targets; XLA holds raw pointers to these
_registering = threading.Lock()


def _answer_metadata(frame: _CallFrame) -> None:
    """XLA asks a handler which FFI API it was written against before using it, and refuses
    one whose version it does not support (rather than letting it misread the call frame)."""
    metadata = C.cast(frame.extension_start, C.POINTER(_MetadataExtension)).contents.metadata.contents
    metadata.api_version.struct_size = C.sizeof(_ApiVersion)
    metadata.api_version.major, metadata.api_version.minor = FFI_API_VERSION
    metadata.traits = 0


def _error(frame: _CallFrame, message: str) -> int:
    api = C.cast(frame.api, C.POINTER(_Api)).contents
    args = _ErrorCreateArgs(C.sizeof(_ErrorCreateArgs), None, message.encode(), _ERROR_INTERNAL)
    return api.error_create(C.byref(args))


def _make_handler(p: Primitive) -> _Handler:
    def handler(frame_pointer):
        frame = frame_pointer.contents
        try:
            if frame.extension_start and frame.extension_start.contents.type == _METADATA_EXTENSION:
                _answer_metadata(frame)
                return None
            args, rets = frame.args.buffers, frame.rets.buffers
            run(p, (args[0].contents.data, args[1].contents.data, rets[0].contents.data), rets[1].contents.data)
            return None
        except Exception as e:  # noqa: BLE001  (reported to XLA, which raises it in the caller)
            return _error(frame, f"jaxclf oneDNN convolution: {e!r}")

    return _Handler(handler)


def _finish_dispatched_work() -> None:
    """At exit, before the interpreter finalizes (atexit): waits for the computations still
    running. An XLA worker thread that reaches a handler (a ctypes callback: it takes the GIL)
    once finalization has begun is ended inside PyGILState_Ensure, and XLA's CPU thread pool
    then waits for it forever when the client is destroyed: the process hangs (issue #23)."""
    for array in jax.live_arrays():
        if not array.is_deleted():
            try:
                array.block_until_ready()
            except Exception:  # noqa: BLE001  (a failed computation: not this hook's to report)
                pass


def target(part: str, spec: Spec) -> tuple[str, Primitive]:
    """The FFI target computing ``part`` of ``spec``, registered with XLA on first use."""
    name = f"jaxclf_onednn_{part}_{spec.name}"
    p = primitive(part, spec)
    with _registering:
        if not _handlers:  # runs before jax's own atexit clean-up (registered earlier)
            atexit.register(_finish_dispatched_work)
        if name not in _handlers:
            handler = _make_handler(p)
            capsule = C.pythonapi.PyCapsule_New
            capsule.restype, capsule.argtypes = C.py_object, (C.c_void_p, C.c_char_p, C.c_void_p)
            jax.ffi.register_ffi_target(name, capsule(C.cast(handler, C.c_void_p), None, None), platform="cpu",
                                        api_version=1)
            _handlers[name] = handler
    return name, p


def _call(part: str, spec: Spec, out_shape, first, second):
    name, p = target(part, spec)
    out, _ = jax.ffi.ffi_call(
        name, (jax.ShapeDtypeStruct(out_shape, jnp.float32), jax.ShapeDtypeStruct((max(p.workspace, 1),), jnp.uint8)),
        vmap_method="sequential")(first, second)
    return out


# ----------------------------------------------------------------------------- the differentiable ops
# The three parts are linear in each argument and each one's gradients are the other two, so
# gradients of gradients (reverse over reverse) stay on oneDNN too.


def _part(part: str, out_shape: Callable[[Spec], tuple], gradients: Callable) -> Callable:
    """One part as a differentiable op ``(a, b, spec)``; ``gradients(spec, a, b, cotangent)``."""

    @functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
    def op(a, b, spec: Spec):
        return _call(part, spec, out_shape(spec), a, b)

    op.defvjp(lambda a, b, spec: (op(a, b, spec), (a, b)), lambda spec, res, c: gradients(spec, *res, c))
    return op


_forward = _part("forward", lambda s: s.y_shape,  # (x, w) -> y
                 lambda spec, x, w, g: (_input_gradient(g, w, spec), _kernel_gradient(x, g, spec)))
_input_gradient = _part("input_gradient", lambda s: s.x_shape,  # (g, w) -> dx
                        lambda spec, g, w, c: (_forward(c, w, spec), _kernel_gradient(c, g, spec)))
_kernel_gradient = _part("kernel_gradient", lambda s: s.w_shape,  # (x, g) -> dw
                         lambda spec, x, g, c: (_input_gradient(g, c, spec), _forward(x, c, spec)))


def conv(x, w, strides: tuple[int, int], pads: tuple[tuple[int, int], tuple[int, int]]):
    """NHWC x HWIO -> NHWC convolution (float32, no dilation, one group) by oneDNN, with
    oneDNN's input and kernel gradients; ``use_for`` says when it applies."""
    spec = Spec(tuple(x.shape), tuple(w.shape), tuple(map(int, strides)),
                tuple((int(lo), int(hi)) for lo, hi in pads))
    return _forward(x, w, spec)
