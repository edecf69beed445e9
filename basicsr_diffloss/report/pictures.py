"""matplotlib for the report's pictures (grid, curves): imported when a picture is drawn, from the ``report`` extra."""

REPORT_EXTRA = "pip install 'basicsr-diffloss[report]'"


def require_matplotlib():
    """The ``matplotlib`` module; an ImportError that names the ``report`` extra when it is not installed."""
    try:
        import matplotlib
    except ImportError as error:
        raise ImportError(f'The comparison report draws its grids and training curves with matplotlib, which is not '
                          f"installed: it comes with the package's 'report' extra ({REPORT_EXTRA}, or "
                          "pip install matplotlib).") from error
    return matplotlib


def pyplot():
    """``matplotlib.pyplot`` on the Agg backend (files only, no display)."""
    matplotlib = require_matplotlib()
    matplotlib.use('Agg')
    import matplotlib.pyplot as plt
    return plt
