from pathlib import Path
from typing import Any

from django.conf import settings
from django.core.management.base import BaseCommand, CommandParser

from orders.diagram import DiagramMarkersMissing, diagram_block_replace, order_state_diagram

# Documents that embed the diagram between the state-diagram markers.
DIAGRAM_DOCUMENTS = ("README.md", "docs/order-states.md")


class Command(BaseCommand):
    help = (
        "Print the order state diagram (Mermaid) built from the Order model; with --write, "
        "rewrite the block between the state-diagram markers in the docs."
    )

    def add_arguments(self, parser: CommandParser) -> None:
        parser.add_argument(
            "--write",
            action="store_true",
            help="Rewrite the marker block in each document instead of printing.",
        )
        parser.add_argument(
            "documents",
            nargs="*",
            help=f"Documents to rewrite (default: {', '.join(DIAGRAM_DOCUMENTS)}).",
        )

    def handle(self, *args: Any, **options: Any) -> None:
        if not options["write"]:
            self.stdout.write(order_state_diagram(), ending="")
            return
        base_dir = Path(settings.BASE_DIR)
        for name in options["documents"] or DIAGRAM_DOCUMENTS:
            document = base_dir / name
            if not document.exists():
                self.stderr.write(f"{name}: not found; skipped.")
                continue
            text = document.read_text(encoding="utf-8")
            try:
                updated = diagram_block_replace(text)
            except DiagramMarkersMissing as error:
                self.stderr.write(f"{name}: {error}; skipped.")
                continue
            if updated == text:
                self.stdout.write(f"{name}: up to date.")
                continue
            document.write_text(updated, encoding="utf-8")
            self.stdout.write(f"{name}: diagram updated.")
