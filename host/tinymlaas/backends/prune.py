"""Structured channel pruning of Keras models: fewer channels, a smaller dense model, then a short fine-tune.

For every Conv2D and Dense layer except the last one (its outputs are the model's outputs), the output channels
with the smallest L1 norm of their filter are removed. Removing output channel c of a layer also removes, in the
layers that consume it, BatchNormalization's c, a DepthwiseConv2D's channel c (and its depth_multiplier outputs),
and input channel c of the next Conv2D / Dense (through a Flatten: every spatial position's c). The result is a new,
ordinary Keras model with smaller layers -- no masks, no sparse kernels -- so every later stage (int8 quantization,
the blob compiler, the device) simply sees a smaller model.

Supported models: chains of layers (Sequential, or functional models with one path) built from Conv2D,
DepthwiseConv2D, SeparableConv2D is *not* supported, BatchNormalization, Dense, Flatten, pooling, global pooling,
Dropout, Activation/ReLU, ZeroPadding2D. Anything else (residual Add, Concatenate, ...) raises BackendError.
"""

from dataclasses import dataclass

import numpy as np

from .interface import BackendError

_PASS_THROUGH = ("Dropout", "Activation", "ReLU", "LeakyReLU", "MaxPooling2D", "AveragePooling2D",
                 "GlobalAveragePooling2D", "GlobalMaxPooling2D", "ZeroPadding2D", "SpatialDropout2D",
                 "GaussianNoise")


@dataclass
class PruneReport:
    fraction: float
    channels_before: dict
    channels_after: dict
    macs_before: int
    macs_after: int
    params_before: int
    params_after: int
    accuracy_before: float
    accuracy_pruned: float      # right after removing channels, before fine-tuning
    accuracy_after: float       # after fine-tuning
    epochs: int

    def as_dict(self):
        return dict(self.__dict__)


def _chain(model):
    """The model's layers in order, checking they form one path from the input to the output."""
    import keras
    layers = [l for l in model.layers if type(l).__name__ != "InputLayer"]
    if isinstance(model, keras.Sequential):
        return layers
    expected = None
    for layer in layers:
        nodes = getattr(layer, "_inbound_nodes", [])
        parents = [p.operation for p in nodes[0].parent_nodes] if len(nodes) == 1 else None
        if parents is None or len(parents) != 1 or (expected is not None and parents[0] is not expected):
            raise BackendError("pruning needs a chain of layers; %s is not fed by exactly the layer before it"
                               % layer.name)
        expected = layer
    return layers


def macs(model):
    """Multiply-accumulates of one inference over Conv2D, DepthwiseConv2D and Dense layers."""
    total = 0
    for layer in model.layers:
        kind = type(layer).__name__
        if kind == "Conv2D":
            kh, kw, ci, co = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += int(h * w * co * kh * kw * ci)
        elif kind == "DepthwiseConv2D":
            kh, kw, ci, m = layer.kernel.shape
            _, h, w, _ = layer.output.shape
            total += int(h * w * ci * m * kh * kw)
        elif kind == "Dense":
            ci, co = layer.kernel.shape
            rows = int(np.prod([d for d in layer.input.shape[1:-1]])) if len(layer.input.shape) > 2 else 1
            total += int(rows * ci * co)
    return total


def _keep_by_l1(kernel, fraction):
    """Indices (sorted) of the output channels (last axis) to keep: the largest-L1 (1 - fraction) of them."""
    co = kernel.shape[-1]
    n_keep = max(1, int(round(co * (1.0 - fraction))))
    norms = np.abs(kernel.reshape(-1, co)).sum(axis=0)
    # stable: ties keep the lower channel index
    order = np.argsort(-norms, kind="stable")
    return np.sort(order[:n_keep])


def prune_channels(model, fraction):
    """A new Keras model with `fraction` of the channels of every hidden Conv2D / Dense layer removed.

    Returns (new model, {layer name: (channels before, after)})."""
    import keras
    if not 0.0 <= fraction < 1.0:
        raise BackendError("prune fraction %r must be in [0, 1)" % fraction)
    layers = _chain(model)
    prunable = [l for l in layers if type(l).__name__ in ("Conv2D", "Dense")]
    if not prunable:
        raise BackendError("the model has no Conv2D or Dense layer to prune")
    last = prunable[-1]
    inp = keras.Input(shape=model.input_shape[1:], dtype=model.inputs[0].dtype)
    x = inp
    keep = None                 # kept channel indices of the current tensor's last axis (None = all)
    changed = {}
    for layer in layers:
        kind = type(layer).__name__
        cfg = layer.get_config()
        weights = layer.get_weights()
        in_shape = layer.input.shape
        if kind == "Conv2D" or kind == "Dense":
            kernel = weights[0]
            if keep is not None:
                kernel = np.take(kernel, keep, axis=-2)
            out_keep = None if layer is last or fraction == 0.0 else _keep_by_l1(kernel, fraction)
            if out_keep is not None:
                kernel = kernel[..., out_keep]
                cfg["filters" if kind == "Conv2D" else "units"] = len(out_keep)
            new_w = [kernel] + ([w if out_keep is None else w[out_keep] for w in weights[1:]])
            changed[layer.name] = (int(weights[0].shape[-1]), int(kernel.shape[-1]))
            keep = out_keep
        elif kind == "DepthwiseConv2D":
            kernel = weights[0]                                      # [kh, kw, ci, mult]
            mult = kernel.shape[-1]
            if keep is not None:
                kernel = kernel[:, :, keep, :]
                outs = (keep[:, None] * mult + np.arange(mult)[None, :]).reshape(-1)
                new_w = [kernel] + [w[outs] for w in weights[1:]]
                keep = outs
            else:
                new_w = weights
        elif kind == "BatchNormalization":
            if cfg.get("axis") not in (-1, [-1], len(in_shape) - 1, [len(in_shape) - 1]):
                raise BackendError("BatchNormalization %s normalises axis %r; pruning needs the channel axis"
                                   % (layer.name, cfg.get("axis")))
            new_w = weights if keep is None else [w[keep] for w in weights]
        elif kind == "Flatten":
            if keep is not None:
                spatial = int(np.prod(in_shape[1:-1]))
                channels = int(in_shape[-1])
                keep = (np.arange(spatial)[:, None] * channels + keep[None, :]).reshape(-1)
            new_w = weights
        elif kind in _PASS_THROUGH or kind == "InputLayer":
            new_w = weights
        else:
            raise BackendError("pruning does not support layer %s (%s)" % (layer.name, kind))
        clone = type(layer).from_config(cfg)
        x = clone(x)
        if new_w:
            clone.set_weights(new_w)
    return keras.Model(inp, x, name=model.name + "_pruned"), changed


def _loss_for(model, y):
    import keras
    act = getattr(model.layers[-1], "activation", None)
    from_logits = not (act is not None and getattr(act, "__name__", "") == "softmax")
    if np.asarray(y).ndim == 1:
        return keras.losses.SparseCategoricalCrossentropy(from_logits=from_logits)
    return keras.losses.CategoricalCrossentropy(from_logits=from_logits)


def accuracy(model, x, y, batch_size=256):
    pred = np.argmax(model.predict(x, batch_size=batch_size, verbose=0), axis=-1)
    labels = np.asarray(y)
    if labels.ndim > 1:
        labels = np.argmax(labels, axis=-1)
    return float(np.mean(pred == labels))


def prune_and_finetune(model, fraction, x_train, y_train, x_val=None, y_val=None, epochs=3, batch_size=32,
                       learning_rate=1e-3, seed=0):
    """Prune `fraction` of the hidden channels, fine-tune for `epochs`; return (pruned model, PruneReport).

    Accuracy is measured on (x_val, y_val), or on the training data when no validation set is given."""
    import keras
    if x_val is None:
        x_val, y_val = x_train, y_train
    keras.utils.set_random_seed(seed)
    before_acc = accuracy(model, x_val, y_val)
    pruned, changed = prune_channels(model, fraction)
    pruned_acc = accuracy(pruned, x_val, y_val)
    if epochs > 0:
        pruned.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=_loss_for(pruned, y_train))
        pruned.fit(np.asarray(x_train), np.asarray(y_train), epochs=epochs, batch_size=batch_size, verbose=0,
                   shuffle=True)
    report = PruneReport(
        fraction=fraction,
        channels_before={k: v[0] for k, v in changed.items()},
        channels_after={k: v[1] for k, v in changed.items()},
        macs_before=macs(model), macs_after=macs(pruned),
        params_before=int(model.count_params()), params_after=int(pruned.count_params()),
        accuracy_before=before_acc, accuracy_pruned=pruned_acc, accuracy_after=accuracy(pruned, x_val, y_val),
        epochs=epochs)
    return pruned, report
