"""The LangChain adapters with the real langchain-core."""

from __future__ import annotations

import pathlib

import pytest

pytest.importorskip("langchain_core")

from langchain_core.documents import Document
from langchain_core.language_models.fake_chat_models import FakeListChatModel
from langchain_core.output_parsers import StrOutputParser
from langchain_core.prompts import ChatPromptTemplate
from langchain_core.runnables import RunnableLambda, RunnablePassthrough

import ibex
from ibex.langchain import IbexEmbeddings, IbexRetriever, IbexVectorStore


def test_retriever_returns_passages_with_their_provenance(quickstart_index: ibex.Index) -> None:
    retriever = IbexRetriever(index=quickstart_index, top_k=3)
    documents = retriever.invoke("how do scientists find planets orbiting distant stars")
    expected = quickstart_index.search("how do scientists find planets orbiting distant stars", top_k=3)
    assert [d.metadata["id"] for d in documents] == [h.id for h in expected]
    first = documents[0]
    assert first.page_content == expected[0].passages[0].text
    assert {"score", "title", "start", "end"} <= set(first.metadata)
    bm25 = IbexRetriever(index=quickstart_index, mode="bm25", top_k=3).invoke("espresso")
    assert [d.metadata["id"] for d in bm25] == [h.id for h in quickstart_index.search("espresso", mode="bm25", top_k=3)]


def test_a_rag_chain_puts_the_retrieved_passages_in_the_prompt(quickstart_index: ibex.Index) -> None:
    retriever = IbexRetriever(index=quickstart_index, top_k=2)
    prompt = ChatPromptTemplate.from_messages(
        [("system", "Answer from the context.\n\n{context}"), ("human", "{question}")]
    )
    seen: list[str] = []

    def remember(value):
        seen.append(value.to_string())
        return value

    llm = FakeListChatModel(responses=["A transit dims the star."])
    chain = (
        {"context": retriever | (lambda docs: "\n\n".join(d.page_content for d in docs)),
         "question": RunnablePassthrough()}
        | prompt
        | RunnableLambda(remember)
        | llm
        | StrOutputParser()
    )
    question = "how do scientists find planets orbiting distant stars"
    assert chain.invoke(question) == "A transit dims the star."
    best = quickstart_index.search(question, top_k=1)[0].passages[0].text
    assert best in seen[0] and question in seen[0]


def test_vector_store(tmp_path: pathlib.Path) -> None:
    store = IbexVectorStore.from_texts(
        ["Black holes form when massive stars collapse.", "Yeast makes dough rise.", "La levure fait lever la pâte."],
        IbexEmbeddings(),
        metadatas=[{"lang": "en"}, {"lang": "en"}, {"lang": "fr"}],
        ids=["hole", "bread", "pain"],
        path=str(tmp_path / "store"),
    )
    found = store.similarity_search("collapsing stars", k=1)
    assert found[0].metadata["id"] == "hole"
    scored = store.similarity_search_with_score("dough", k=3, filter={"lang": {"$eq": "fr"}})
    assert [d.metadata["id"] for d, _ in scored] == ["pain"]
    # LangChain's operator syntax is ibex's: operators act inside retrieval; unknown ones are
    # refused by the engine, naming the field.
    assert [d.metadata["id"] for d in store.similarity_search("dough", k=3, filter={"lang": {"$in": ["fr"]}})] == ["pain"]
    assert {d.metadata["id"] for d in store.similarity_search("dough", k=3, filter={"$or": [{"lang": "fr"}, {"lang": {"$ne": "en"}}]})} == {"pain"}
    with pytest.raises(ValueError, match="lang"):
        store.similarity_search("dough", filter={"lang": {"$regex": "f.*"}})
    ids = store.add_documents([Document(page_content="Comets are icy bodies.", metadata={"lang": "en"})])
    assert len(ids) == 1 and ids[0] in store.index
    assert store.delete(["bread"])
    assert "bread" not in store.index
    as_retriever = store.as_retriever(search_kwargs={"k": 1})
    assert as_retriever.invoke("icy comets")[0].metadata["id"] == ids[0]


def test_embeddings_match_the_embedder() -> None:
    embeddings = IbexEmbeddings()
    assert embeddings.embed_documents(["a text"])[0] == pytest.approx(
        ibex.Embedder().embed(["a text"])[0].tolist(), abs=1e-6
    )
    assert len(embeddings.embed_query("a query")) == 384
