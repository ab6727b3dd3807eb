"""`skindeep model ...`: inspect what skindeep finds inside a checkpoint."""

from __future__ import annotations

from typing import Annotated

import typer
from rich.console import Console
from rich.table import Table

app = typer.Typer(help="Inspect models: layers, widths and module paths.", no_args_is_help=True)
out = Console()


@app.callback()
def _group() -> None:
    """Inspect models: layers, widths and module paths."""


def _human(count: int) -> str:
    for unit, size in (("B", 1e9), ("M", 1e6), ("K", 1e3)):
        if count >= size:
            return f"{count / size:.1f}{unit} ({count:,})"
    return str(count)


@app.command()
def info(
    model: Annotated[str, typer.Option("--model", "-m", help="Hub id, checkpoint folder or .gguf")],
    gguf_file: Annotated[str | None, typer.Option(help="GGUF file name inside --model")] = None,
    dtype: Annotated[str, typer.Option(help="float32, bfloat16, float16 or auto")] = "float32",
    device: Annotated[
        str,
        typer.Option(help="cpu, cuda, cuda:N, mps, or auto (device_map=auto: spread over devices)"),
    ] = "cpu",
    trust_remote_code: Annotated[bool, typer.Option(help="Allow custom model code")] = False,
) -> None:
    """Load a model and print its architecture, size, chat template and module paths."""
    from skindeep.models import load_model  # lazy: keeps `skindeep --help` fast

    loaded = load_model(
        model, gguf_file=gguf_file, dtype=dtype, device=device, trust_remote_code=trust_remote_code
    )
    adapter = loaded.adapter
    table = Table(title="model info", show_header=False)
    table.add_column("field", style="bold")
    table.add_column("value")
    rows = {
        "source": loaded.source,
        "gguf file": loaded.gguf_file or "-",
        "architecture": type(loaded.model).__name__,
        "model type": str(getattr(adapter.config, "model_type", "?")),
        "fingerprint": loaded.fingerprint,
        "layers": str(adapter.num_layers),
        "hidden size": str(adapter.hidden_size),
        "parameters": _human(sum(p.numel() for p in loaded.model.parameters())),
        "dtype": str(next(loaded.model.parameters()).dtype).removeprefix("torch."),
        "chat template": "yes" if adapter.has_chat_template else "no (fallback format)",
        "post-sublayer norm": "yes" if adapter.has_post_sublayer_norm else "no",
    }
    rows.update({f"path: {k}": v or "-" for k, v in adapter.module_paths().items()})
    for key, value in rows.items():
        table.add_row(key, value)
    out.print(table)
