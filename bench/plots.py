"""What the benchmark's plots share: matplotlib without a display, one marker and colour per
system, log-log axes with a grid and a legend."""

SERIES = (("Postern", "o", "tab:blue"), ("Postfix", "s", "tab:orange"))


def pyplot():
    """matplotlib's pyplot drawing to files, or None when matplotlib is not installed."""
    try:
        import matplotlib
        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        return None
    return plt


def finish(fig, axes, path):
    """Log-log `axes` with a grid and a legend, and the figure written to `path`."""
    for ax in axes:
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    return True
