"""TM1xx: problems in the data, found before training (``trainmedic check-data``) or on batches at run time.

The detectors live in :mod:`trainmedic.tabular.checks`; this module holds each rule's identity and the
documentation that ``trainmedic explain`` prints.
"""

from trainmedic.rules.registry import rule

NOTE_000 = "Practitioner note 000 (sparse non-negative counts; NaN hunting), ../shared/seeds/000_*.txt"
NOTE_001 = "Practitioner note 001 (d2l Kaggle house prices: standardize, one-hot, log-RMSE), ../shared/seeds/001_*.txt"
NOTE_002 = "Practitioner note 002 (learning rate, data quality, small data and gradient boosting), ../shared/seeds/002_*.txt"
NOTE_003 = "Practitioner note 003 (NaN/None/NaT/\"\" in pandas, the `Unnamed: 0` column, dtypes), ../shared/seeds/003_*.txt"
NOTE_004 = "Practitioner note 004 (shortcut features, imbalance, loss rebounds), ../shared/seeds/004_*.txt"
PANDAS_NA = "pandas.read_csv: na_values, keep_default_na, thousands, sep=None (https://pandas.pydata.org/docs/reference/api/pandas.read_csv.html)"

NONFINITE_FEATURES = rule(
    "TM101",
    "nonfinite-features",
    "warning",
    summary="Some feature values are missing or not finite: NaN, +/-Inf, None, NaT or an empty string.",
    what="""
        One or more feature columns hold values a network cannot compute with. A single NaN in an input
        row makes that row's prediction NaN, and through the loss and the backward pass every weight the
        row touches: the whole model turns to NaN at the next optimizer step. At run time the rows of the
        batch that carry the value are named.
        """,
    why="""
        Missing answers in a survey, a join that found no partner, a division by zero upstream, a date
        that did not parse (NaT), an empty cell read as "" in a text column. pandas writes all of these
        differently (NaN for numbers, None or NaN for objects, NaT for times, "" for strings), so a check
        for one kind misses the others (practitioner note 003).
        """,
    fix="""
        Impute inside each cross-validation fold (sklearn SimpleImputer, median for numbers, a "missing"
        category for text), or drop the rows or the column when most of it is missing. Replace +/-Inf by
        NaN first: `df.replace([np.inf, -np.inf], np.nan)`. `trainmedic fit` imputes inside each fold.
        """,
    example="""
        df = pd.read_csv("train.csv")
        df.isna().sum()                     # LotFrontage 259, GarageYrBlt 81, ...
        SimpleImputer(strategy="median").fit(X_train)   # never on train+validation+test together
        """,
    references=(NOTE_003, NOTE_000),
)

BAD_TARGET = rule(
    "TM102",
    "bad-target",
    "error",
    summary="The target column has missing, non-finite or unparsable values.",
    what="""
        Some rows have no usable label: the target is NaN, +/-Inf, empty, or text that is not a number
        when the task needs one. A row without a label cannot be trained on or scored; a non-finite label
        makes the loss NaN on the first batch that contains it.
        """,
    why="""
        Labels joined from another table where no match existed, a failed unit conversion, a sentinel
        such as "?" or "n/a", a thousands separator ("1,234") that made pandas keep the column as text.
        """,
    fix="""
        Drop the rows without a label (`df = df[df[target].notna()]`), or fix the parsing
        (`pd.read_csv(..., thousands=",", na_values=["?"])`). Never fill a missing label with the mean.
        """,
    example="""
        y = pd.to_numeric(df["price"], errors="coerce")
        df = df[np.isfinite(y)]
        """,
    references=(NOTE_003, NOTE_002),
)

NUMBERS_AS_TEXT = rule(
    "TM103",
    "numbers-as-text",
    "warning",
    lighter={"info": "the only such numbers had thousands separators and were read as numbers (pandas' default "
                     "would have kept them as text)"},
    summary="A text column whose values are (almost) all numbers: it will be one-hot encoded instead of used as a number.",
    what="""
        At least 95 % of the non-missing values of a text column parse as numbers once spaces, thousands
        separators or a currency sign are removed. Left as text, the column becomes one one-hot column per
        distinct value: the order and distance between values is lost, and unseen values at test time are
        ignored.
        """,
    why="""
        A thousands separator ("1,234"), stray spaces (" 12 "), a decimal comma, a currency sign, or a few
        sentinel strings ("?", "unknown") in an otherwise numeric column make pandas keep the whole column
        as text.
        """,
    fix="""
        Convert the column: `pd.to_numeric(df[col].str.replace(",", "").str.strip(), errors="coerce")`, or
        read it with `pd.read_csv(..., thousands=",", na_values=["?"])`. The evidence lists the values that
        did not parse.
        """,
    example="""
        df["income"]              # "1,200", " 950 ", "2,400", "?"
        df["income"] = pd.to_numeric(df["income"].str.replace(",", "").str.strip(), errors="coerce")
        """,
    references=(PANDAS_NA, NOTE_003),
)

INDEX_COLUMN = rule(
    "TM104",
    "index-column",
    "warning",
    summary="A column named `Unnamed: 0`, or equal to the row number: a saved DataFrame index.",
    what="""
        The file carries the index of the DataFrame it was written from. As a feature it is the row
        number: in a file sorted by date or by label it predicts the label perfectly in training and
        means nothing on new data.
        """,
    why="""
        `df.to_csv(path)` writes the index by default; reading the file back with `pd.read_csv(path)` turns
        it into a column named `Unnamed: 0` (practitioner note 003). Writing and reading again adds one
        more each time.
        """,
    fix="""
        Read with `pd.read_csv(path, index_col=0)`, or write with `df.to_csv(path, index=False)`, or drop
        the column. A genuine identifier (an `Id` column) should also be kept out of the features.
        """,
    example="""
        train.to_csv("train.csv")             # writes the index
        pd.read_csv("train.csv").columns[0]   # 'Unnamed: 0'
        pd.read_csv("train.csv", index_col=0) # fixed
        """,
    references=(NOTE_003,),
)

USELESS_COLUMN = rule(
    "TM105",
    "useless-column",
    "warning",
    summary="A column that is constant or entirely missing carries no information.",
    what="""
        Every row has the same value in this column, or no value at all. It cannot help any model; after
        standardization a constant column divides by a zero standard deviation (NaN), and one-hot encoding
        it adds dead inputs.
        """,
    why="""
        A filter upstream kept only one value (all rows from one country), a field that was never filled
        in, a join that matched nothing, or a sample too small to show the rare values.
        """,
    fix="Drop the column. `trainmedic fit` drops such columns inside each fold before scaling.",
    example="""
        df.nunique(dropna=True)            # PoolQC 3 values, Utilities 2, Street 2 ...
        df = df.loc[:, df.nunique(dropna=True) > 1]
        """,
    references=(NOTE_003,),
)

ID_LIKE_COLUMN = rule(
    "TM106",
    "id-like-column",
    "warning",
    summary="A column unique on every row (an identifier): at best useless, at worst a shortcut or a leak.",
    what="""
        The column takes a different value on every row and is not the target. A model can memorise the
        training rows through it; if the identifier was assigned in an order related to the label (by
        date, by outcome, by source) it is a shortcut that scores well in validation and fails in use.
        """,
    why="""
        Customer numbers, row ids, file names, timestamps kept as features. A model learns whatever
        separates the labels, including features no human would call meaningful (practitioner note 004).
        """,
    fix="""
        Drop it from the features and keep it aside to join predictions back (`trainmedic fit` uses such a
        column as the id of `submission.csv`).
        """,
    example="""
        X = df.drop(columns=["Id", "SalePrice"])
        """,
    references=(NOTE_004,),
)

DUPLICATES = rule(
    "TM107",
    "duplicates",
    "warning",
    summary="Duplicate rows, or rows with the same features and different labels.",
    what="""
        Some rows repeat exactly. Under K-fold cross-validation a duplicate can land in training and
        validation at once, so validation scores it from memory and looks better than it is. Rows with the
        same features and different labels put a floor under the error no model can beat.
        """,
    why="""
        Files concatenated twice, an event logged by two systems, a join that multiplied rows; conflicting
        labels come from label noise or from features that do not capture what decides the label.
        """,
    fix="""
        `df.drop_duplicates()`; for conflicting labels, inspect them, fix the labels, or group the
        duplicates into the same fold (sklearn GroupKFold).
        """,
    example="""
        df.duplicated().sum()
        df.drop_duplicates(subset=feature_cols).shape   # fewer rows: some differ only by the label
        """,
    references=(NOTE_002,),
)

UNSCALED_FEATURES = rule(
    "TM108",
    "unscaled-features",
    "info",
    summary="Numeric features on very different scales, or far from zero mean.",
    what="""
        The typical sizes of the numeric columns differ by more than a factor 1000 (areas in square feet
        next to counts of bathrooms), or columns have a mean far from zero relative to their spread
        (years around 2000). A network trained by gradient descent on such inputs needs a learning rate
        small enough for the largest feature, so it barely moves the weights of the small ones; the
        first layer's pre-activations start far from zero and saturate.
        """,
    why="""
        Raw units. Tree models do not care; linear models and networks do (practitioner note 001
        standardizes every numeric column to zero mean and unit variance for this reason).
        """,
    fix="""
        Standardize each numeric column with statistics of the training rows only (sklearn StandardScaler
        inside a Pipeline fitted per fold). `trainmedic fit` does this. Heavy-tailed positive columns are
        better after `log1p`.
        """,
    example="""
        ColumnTransformer([("num", make_pipeline(SimpleImputer(strategy="median"), StandardScaler()), num_cols),
                           ("cat", OneHotEncoder(handle_unknown="ignore"), cat_cols)])
        """,
    references=(NOTE_001,),
)

OUTLIERS = rule(
    "TM109",
    "outliers",
    "warning",
    summary="Values with a robust z-score above 10 in a feature or in the target.",
    what="""
        Some values lie more than 10 robust standard deviations (median and median absolute deviation,
        scaled by 1.4826) from the median of their column. Under a squared loss a single such row can
        dominate the gradient and the fitted coefficients of a linear model, and in validation it can
        dominate the error.
        """,
    why="""
        Data-entry errors (an extra zero, a unit mix-up), sentinel values (999999, -1), or genuine but
        rare cases: in the house-price data two very large houses sold cheaply as partial sales dominate
        the error of linear models.
        """,
    fix="""
        Inspect the rows the evidence names. Fix obvious errors; drop rows only with evidence that they
        are wrong, or use a robust model (trees, Huber loss) or a log transform. Never drop rows from the
        validation or test sets to improve the score.
        """,
    example="""
        med = x.median(); mad = (x - med).abs().median() * 1.4826
        df[(x - med).abs() / mad > 10]
        """,
    references=(NOTE_003, NOTE_001),
)

CLASS_IMBALANCE = rule(
    "TM110",
    "class-imbalance",
    "warning",
    summary="The smallest class has fewer than a tenth as many rows as the largest.",
    what="""
        A classifier can reach a high accuracy by always predicting the majority class; the loss barely
        rewards learning the minority class, and accuracy hides the failure.
        """,
    why="""
        Rare events (fraud, disease, failures) are rare. A model learns whatever separates the labels most
        cheaply, and ignoring the small class is cheap (practitioner note 004).
        """,
    fix="""
        Judge with log-loss, balanced accuracy, F1 or PR-AUC rather than accuracy; stratify the folds
        (StratifiedKFold); weight the loss (`nn.CrossEntropyLoss(weight=...)`) or resample the training rows.
        """,
    example="""
        y.value_counts(normalize=True)         # no 0.96, yes 0.04
        StratifiedKFold(n_splits=5, shuffle=True, random_state=0)
        """,
    references=(NOTE_004,),
)

SPARSE_COUNT_TARGET = rule(
    "TM111",
    "sparse-count-target",
    "info",
    summary="The target is a small non-negative count, mostly zeros: model it as a count, not with MSE.",
    what="""
        The target takes non-negative integer values and at least half of them are 0 (or the mean is
        below 2). MSE on such a target gives tiny errors and tiny gradients (a prediction of 0.8 for 1
        costs 0.04), a linear head predicts negative counts, and clamping them to 0 or rounding 1.5 to 1
        or 2 throws information away (practitioner note 000).
        """,
    why="""
        Counts of rare events per period: purchases per day, doctor visits per fortnight, failures per
        machine. Their distribution is skewed with a spike at zero, not Gaussian.
        """,
    fix="""
        Predict a log-rate and train with the Poisson negative log-likelihood
        (`nn.PoissonNLLLoss(log_input=True)`), or predict a distribution over the counts: a softmax over
        0..K with a tail bucket, or a negative-binomial / zero-inflated head. Judge by mean Poisson
        deviance and the held-out negative log-likelihood. `trainmedic fit` does this with `--task count`.
        Never MSE and rounding.
        """,
    example="""
        log_rate = model(x).squeeze(-1)
        loss = nn.PoissonNLLLoss(log_input=True)(log_rate, y)     # not ((model(x) - y) ** 2).mean()
        """,
    references=(NOTE_000,),
)

SKEWED_POSITIVE_TARGET = rule(
    "TM112",
    "skewed-positive-target",
    "info",
    summary="A positive, right-skewed target (skew > 1 or max/min > 100): train on log(y), judge by log-RMSE.",
    what="""
        The target is strictly positive and its distribution has a long right tail. MSE on the raw values
        lets the most expensive rows dominate the loss, while what matters is usually the relative error:
        10 % off on a cheap house should cost as much as 10 % off on an expensive one.
        """,
    why="""
        Prices, incomes, sizes and durations grow multiplicatively. Practitioner note 001 trains on raw
        prices with MSE and measures log-RMSE only at the end; the training and the metric disagree.
        """,
    fix="""
        Train on `log(y)` (or `log1p(y)`), predict `exp` of the output, and judge by the RMSE of the logs.
        `trainmedic fit` does this with `--task log-regression` (chosen automatically for such targets).
        """,
    example="""
        y_log = np.log(df["SalePrice"])
        rmse = np.sqrt(np.mean((pred_log - y_log) ** 2))        # log-RMSE, the Kaggle metric
        """,
    references=(NOTE_001,),
)

SMALL_DATA = rule(
    "TM113",
    "small-data",
    "info",
    summary="Fewer than 10,000 rows: compare the network with gradient boosting.",
    what="""
        On a few thousand tabular rows, gradient-boosted trees (LightGBM, XGBoost) usually match or beat a
        neural network, train in seconds and need little tuning. A network may still add value in a blend.
        """,
    why="""
        Networks need data to learn what trees get from their structure: thresholds, interactions, and
        indifference to scale and outliers. Practitioner note 002: with only ~2,000 rows, an ensemble of
        XGBoost-style models does better than deep learning.
        """,
    fix="""
        Always report a gradient-boosting baseline on the same folds, and blend on out-of-fold predictions
        when both are close. `trainmedic fit` trains LightGBM next to the network and blends them.
        """,
    example="""
        lightgbm.LGBMRegressor(n_estimators=2000, learning_rate=0.02, num_leaves=15).fit(X_train, y_train)
        """,
    references=(NOTE_002,),
)

TRAIN_TEST_MISMATCH = rule(
    "TM114",
    "train-test-mismatch",
    "error",
    lighter={"warning": "the test file only adds columns or categories unseen in training, which the model "
                        "ignores"},
    summary="The test file differs from the training file: columns, dtypes or categories.",
    what="""
        Columns present in one file and not the other, a column numeric in one and text in the other, or
        categories that appear only in the test file. A model fitted on the training columns cannot score
        the test file as it is, or silently scores it wrong (an unseen category becomes all-zero one-hot).
        """,
    why="""
        A different export, a renamed column, a column computed only for training, a different locale
        (decimal comma), rare categories absent from the training sample.
        """,
    fix="""
        Align the files: same column names, same parsing options, same dtypes. Unseen categories are
        handled by `OneHotEncoder(handle_unknown="ignore")` but deserve a look when they are frequent.
        """,
    example="""
        set(train.columns) ^ set(test.columns)          # columns in only one file
        test["MSZoning"][~test["MSZoning"].isin(train["MSZoning"])].unique()
        """,
    references=(NOTE_003,),
)

MISSING_MEANS_NONE = rule(
    "TM115",
    "missing-means-none",
    "warning",
    summary='A category literally named "None" or "NA" that pandas read as missing.',
    what="""
        pandas turns the strings "None", "NA", "N/A", "null", "NaN" and a few more into missing values by
        default. When the file uses one of them as a real category, those rows become indistinguishable
        from truly missing ones. In the house-price data, MasVnrType "None" means "no masonry veneer" and
        pandas reads it as missing (with recent pandas versions); "NA" in PoolQC or Alley means "no pool" /
        "no alley".
        """,
    why="""
        `pd.read_csv` applies its default `na_values` list unless `keep_default_na=False` is passed.
        """,
    fix="""
        Read the file with `keep_default_na=False, na_values=[""]` and decide per column what is missing,
        or treat the missing value as its own category ("missing" in an imputer). `trainmedic` reads the
        literal strings back as categories in text columns.
        """,
    example="""
        pd.read_csv("train.csv")["MasVnrType"].isna().sum()                                   # 872
        pd.read_csv("train.csv", keep_default_na=False, na_values=[""])["MasVnrType"].value_counts()
        """,
    references=(PANDAS_NA, NOTE_003),
)

FREE_TEXT_COLUMN = rule(
    "TM118",
    "free-text-column",
    "info",
    summary="A column of free text (sentences): left out of the features unless asked for.",
    what="""
        Most values are distinct, 20 or more characters long and contain spaces: descriptions, comments,
        reviews. Read as a category, every sentence would be its own one-hot column seen once: nothing a
        model can learn from, and thousands of useless columns.
        """,
    why="""
        Tables exported from forms and shops keep the free-text fields beside the measurements. The words
        can carry signal (a review's tone), but only through an encoding made for text.
        """,
    fix="""
        Leave it out (`trainmedic fit` does, and lists it in `cv.json`'s `dropped_columns`), or encode its
        words: `trainmedic fit --text COLUMN` keeps it as a TF-IDF of its words and word pairs reduced to a few
        SVD components, with a cross-fitted linear score of the TF-IDF beside them, fitted inside each fold on
        the training rows only.
        """,
    example="""
        from sklearn.pipeline import make_pipeline
        from sklearn.feature_extraction.text import TfidfVectorizer
        from sklearn.decomposition import TruncatedSVD
        text_encoder = make_pipeline(TfidfVectorizer(min_df=2, ngram_range=(1, 2)), TruncatedSVD(16))
        """,
    references=(NOTE_004,),
)
