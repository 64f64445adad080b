"""Hand-written PMML 4.4 documents for the tests and the benchmark: the conformance models and
a small classifier with a string categorical field and a missing-value replacement."""

from __future__ import annotations

from pathlib import Path

HEAD = ('<?xml version="1.0" encoding="UTF-8"?>\n'
        '<PMML xmlns="http://www.dmg.org/PMML-4_4" version="4.4"><Header/>')

ADD_SUB = HEAD + """
<DataDictionary>
  <DataField name="INPUT0" optype="continuous" dataType="float"/>
  <DataField name="INPUT1" optype="continuous" dataType="float"/>
  <DataField name="OUTPUT0" optype="continuous" dataType="float"/>
</DataDictionary>
<RegressionModel functionName="regression">
  <MiningSchema>
    <MiningField name="INPUT0"/><MiningField name="INPUT1"/>
    <MiningField name="OUTPUT0" usageType="target"/>
  </MiningSchema>
  <Output>
    <OutputField name="OUTPUT1" optype="continuous" dataType="float" feature="transformedValue">
      <Apply function="-"><FieldRef field="INPUT0"/><FieldRef field="INPUT1"/></Apply>
    </OutputField>
  </Output>
  <RegressionTable intercept="0">
    <NumericPredictor name="INPUT0" coefficient="1"/>
    <NumericPredictor name="INPUT1" coefficient="1"/>
  </RegressionTable>
</RegressionModel></PMML>
"""

# no target: the only result is the OutputField echoing the input
ECHO_TEXT = HEAD + """
<DataDictionary><DataField name="TEXT" optype="categorical" dataType="string"/></DataDictionary>
<RegressionModel functionName="regression">
  <MiningSchema><MiningField name="TEXT"/></MiningSchema>
  <Output>
    <OutputField name="ECHO" optype="categorical" dataType="string" feature="transformedValue">
      <FieldRef field="TEXT"/>
    </OutputField>
  </Output>
  <RegressionTable intercept="0"/>
</RegressionModel></PMML>
"""

# logistic regression: sex (string, two valid values), age (double, missing -> 30), n (integer)
CLASSIFIER = HEAD + """
<DataDictionary>
  <DataField name="sex" optype="categorical" dataType="string">
    <Value value="female"/><Value value="male"/>
  </DataField>
  <DataField name="age" optype="continuous" dataType="double"/>
  <DataField name="n" optype="continuous" dataType="integer"/>
  <DataField name="y" optype="categorical" dataType="string"><Value value="no"/><Value value="yes"/>
  </DataField>
</DataDictionary>
<RegressionModel functionName="classification" normalizationMethod="logit">
  <MiningSchema>
    <MiningField name="sex"/>
    <MiningField name="age" missingValueReplacement="30"/>
    <MiningField name="n"/>
    <MiningField name="y" usageType="target"/>
  </MiningSchema>
  <Output>
    <OutputField name="probability(no)" optype="continuous" dataType="double"
                 feature="probability" value="no"/>
    <OutputField name="probability(yes)" optype="continuous" dataType="double"
                 feature="probability" value="yes"/>
  </Output>
  <RegressionTable intercept="0.5" targetCategory="yes">
    <NumericPredictor name="age" coefficient="-0.02"/>
    <NumericPredictor name="n" coefficient="0.1"/>
    <CategoricalPredictor name="sex" value="female" coefficient="1.5"/>
  </RegressionTable>
  <RegressionTable intercept="0" targetCategory="no"/>
</RegressionModel></PMML>
"""


def add_sub_pmml(folder: Path) -> None:
    (folder / "model.pmml").write_text(ADD_SUB)


def echo_text_pmml(folder: Path) -> None:
    (folder / "model.pmml").write_text(ECHO_TEXT)


def classifier_pmml(folder: Path) -> None:
    (folder / "model.pmml").write_text(CLASSIFIER)
