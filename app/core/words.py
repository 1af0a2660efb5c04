"""The reference that every view's words cite."""

from __future__ import annotations

PAPER = ("He, Deng, Qiao, *Dynamic Multi-Scale Filters for Semantic Segmentation*, ICCV 2019 "
         "([paper](https://openaccess.thecvf.com/content_ICCV_2019/papers/He_Dynamic_Multi-Scale_"
         "Filters_for_Semantic_Segmentation_ICCV_2019_paper.pdf), [mmsegmentation config]"
         "(https://github.com/open-mmlab/mmsegmentation/tree/main/configs/dmnet))")
