"""The training runtime behind ``icon-dsl train``: data, views, metrics and pictures.

Import the submodules directly (``icon_dsl.train.data``, ``.augment``, ``.metrics``, ``.plots``);
this package module stays empty so that importing it pulls in neither torch nor matplotlib.
"""
