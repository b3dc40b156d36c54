"""Sentiment analyses of the Kim (2014) CNN's filters with conductance (Dhamdhere et al. 2018, their sentiment CNN).

- filters:  the 300 max-pooled filters as named units (window, map), the n-gram each fires on, their total
            conductance to a sentiment score, and each token's conductance through one filter.
- signs:    the sign of each filter's conductance over a set of sentences; positive / negative / mixed shares.
- lexicon:  sentiment words (a built-in list, or the words most associated with each label in training data).
- negation: minimal pairs made by inserting a negator before a sentiment word; filters whose sign flips.
- heatmap:  tokens coloured by a score, for the terminal (ANSI) and for HTML.
- plots:    the sign map (filters x sentences) as a PNG.
- report:   the HTML page and terminal summary of `neuronimp filters` (reads the run context).
- text:     token ids <-> tokens, n-grams under a window.
"""
